//! An instance's backup policy (DCS `BackupPolicy`): whether backups are
//! automatic, how long they are kept, and when they run — checked once,
//! then asked what is due at a given moment.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};

/// Longest retention accepted. DCS caps `save_days` at 7; backup services
/// commonly keep 35 to 730 days, so rdbvault accepts up to ten years.
pub const MAX_SAVE_DAYS: u32 = 3650;

/// Why a policy was refused; each maps to DCS's own code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("save_days: {0}")]
    SaveDays(String),
    #[error("backup_type: {0}")]
    BackupType(String),
    #[error("period_type: {0}")]
    PeriodType(String),
    #[error("backup_at: {0}")]
    BackupAt(String),
    #[error("begin_at: {0}")]
    BeginAt(String),
    #[error("timezone_offset: {0}")]
    TimezoneOffset(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupType {
    Auto,
    Manual,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Auto => "auto",
            BackupType::Manual => "manual",
        }
    }
}

/// A checked policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub backup_type: BackupType,
    /// Days automatic backups are kept (required for `auto`).
    pub save_days: Option<u32>,
    pub plan: Option<Plan>,
}

/// When automatic backups run: on `days` (1 = Monday .. 7 = Sunday), in
/// the window `begin_at` of the zone `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub days: Vec<u8>,
    pub window: Window,
    /// As given (`+0800`); `None` means UTC.
    pub timezone_offset: Option<String>,
    offset: FixedOffset,
}

/// `HH:MM-HH:MM`, in minutes of the day; a window that ends before it
/// starts runs past midnight (`23:00-01:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u32,
    pub end: u32,
}

impl Window {
    pub fn parse(raw: &str) -> Result<Window, PolicyError> {
        let bad = || PolicyError::BeginAt(format!("{raw:?} is not a window HH:MM-HH:MM"));
        let (a, b) = raw.split_once('-').ok_or_else(bad)?;
        let minutes = |t: &str| -> Option<u32> {
            let (h, m) = t.split_once(':')?;
            if h.len() != 2
                || m.len() != 2
                || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (start, end) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
        if start == end {
            return Err(PolicyError::BeginAt(format!("{raw:?} is an empty window")));
        }
        Ok(Window { start, end })
    }

    fn length(self) -> u32 {
        (self.end + 24 * 60 - self.start) % (24 * 60)
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// One automatic backup that is due: the local date it is due for, and
/// when its window closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub date: NaiveDate,
    pub closes: DateTime<Utc>,
}

/// The policy as a client sent it, before it is checked.
#[derive(Debug, Clone, Default)]
pub struct Raw<'a> {
    pub backup_type: &'a str,
    pub save_days: Option<i64>,
    pub plan: Option<RawPlan<'a>>,
}

#[derive(Debug, Clone, Default)]
pub struct RawPlan<'a> {
    pub timezone_offset: Option<&'a str>,
    pub backup_at: &'a [i64],
    pub period_type: &'a str,
    pub begin_at: &'a str,
}

impl Policy {
    /// Checks `raw` as DCS does (and with rdbvault's longer retention).
    pub fn check(raw: &Raw<'_>) -> Result<Policy, PolicyError> {
        let backup_type = match raw.backup_type {
            "auto" => BackupType::Auto,
            "manual" => BackupType::Manual,
            other => {
                return Err(PolicyError::BackupType(format!(
                    "{other:?} is not one of auto, manual"
                )));
            }
        };
        let save_days = match raw.save_days {
            None if backup_type == BackupType::Auto => {
                return Err(PolicyError::SaveDays(
                    "required when backup_type is auto".into(),
                ));
            }
            None => None,
            Some(d) => Some(
                u32::try_from(d)
                    .ok()
                    .filter(|d| (1..=MAX_SAVE_DAYS).contains(d))
                    .ok_or_else(|| {
                        PolicyError::SaveDays(format!("{d} is not within 1..{MAX_SAVE_DAYS}"))
                    })?,
            ),
        };
        let plan = raw.plan.as_ref().map(Plan::check).transpose()?;
        if backup_type == BackupType::Auto && plan.is_none() {
            return Err(PolicyError::BeginAt(
                "periodical_backup_plan is required when backup_type is auto".into(),
            ));
        }
        Ok(Policy {
            backup_type,
            save_days,
            plan,
        })
    }

    /// The automatic backup due at `now`, if one is: `now` lies in the
    /// window of a planned day (in the plan's zone; a window past midnight
    /// belongs to the day it starts on).
    pub fn due(&self, now: DateTime<Utc>) -> Option<Due> {
        let plan = self
            .plan
            .as_ref()
            .filter(|_| self.backup_type == BackupType::Auto)?;
        let local = now.with_timezone(&plan.offset);
        // Today's window, or yesterday's if it runs past midnight.
        [local.date_naive(), local.date_naive().pred_opt()?]
            .into_iter()
            .find_map(|date| {
                let weekday = u8::try_from(date.weekday().number_from_monday()).ok()?;
                if !plan.days.contains(&weekday) {
                    return None;
                }
                let opens = plan
                    .offset
                    .from_local_datetime(&date.and_hms_opt(0, 0, 0)?)
                    .single()?
                    + Duration::minutes(i64::from(plan.window.start));
                let closes = opens + Duration::minutes(i64::from(plan.window.length()));
                (opens <= local && local < closes).then(|| Due {
                    date,
                    closes: closes.with_timezone(&Utc),
                })
            })
    }
}

impl Plan {
    fn check(raw: &RawPlan<'_>) -> Result<Plan, PolicyError> {
        if raw.period_type != "weekly" {
            return Err(PolicyError::PeriodType(format!(
                "{:?} is not weekly (the only period DCS has)",
                raw.period_type
            )));
        }
        if raw.backup_at.is_empty() {
            return Err(PolicyError::BackupAt(
                "at least one day, 1 (Monday) to 7".into(),
            ));
        }
        let mut days = Vec::with_capacity(raw.backup_at.len());
        for &d in raw.backup_at {
            let day = u8::try_from(d)
                .ok()
                .filter(|d| (1..=7).contains(d))
                .ok_or_else(|| PolicyError::BackupAt(format!("{d} is not a day 1..7")))?;
            if !days.contains(&day) {
                days.push(day);
            }
        }
        days.sort_unstable();
        let window = Window::parse(raw.begin_at)?;
        let (timezone_offset, offset) = match raw.timezone_offset.filter(|z| !z.is_empty()) {
            None => (
                None,
                FixedOffset::east_opt(0).ok_or_else(|| zone_error("UTC"))?,
            ),
            Some(z) => (Some(z.to_string()), parse_offset(z)?),
        };
        Ok(Plan {
            days,
            window,
            timezone_offset,
            offset,
        })
    }

    /// Rebuilds a stored plan (already checked when it was stored).
    pub fn stored(
        days: Vec<u8>,
        begin_at: &str,
        timezone_offset: Option<String>,
    ) -> Result<Plan, PolicyError> {
        let offset = match timezone_offset.as_deref() {
            None => FixedOffset::east_opt(0).ok_or_else(|| zone_error("UTC"))?,
            Some(z) => parse_offset(z)?,
        };
        Ok(Plan {
            days,
            window: Window::parse(begin_at)?,
            timezone_offset,
            offset,
        })
    }
}

fn zone_error(z: &str) -> PolicyError {
    PolicyError::TimezoneOffset(format!("{z:?} is not an offset between -1200 and +1200"))
}

/// `+0800`, `-0530`, `+12:00`: within -12:00..+12:00 (a colon, if any,
/// between the hours and the minutes).
fn parse_offset(z: &str) -> Result<FixedOffset, PolicyError> {
    let (sign, rest) = match z.as_bytes().first() {
        Some(b'+') => (1, &z[1..]),
        Some(b'-') => (-1, &z[1..]),
        _ => return Err(zone_error(z)),
    };
    let digits: String = match rest.split_once(':') {
        Some((h, m)) if h.len() == 2 => format!("{h}{m}"),
        Some(_) => return Err(zone_error(z)),
        None => rest.to_string(),
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(zone_error(z));
    }
    let (h, m): (i32, i32) = (
        digits[..2].parse().map_err(|_| zone_error(z))?,
        digits[2..].parse().map_err(|_| zone_error(z))?,
    );
    if m >= 60 || h * 60 + m > 12 * 60 {
        return Err(zone_error(z));
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(|| zone_error(z))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto(days: &[i64], window: &str, zone: Option<&str>) -> Policy {
        Policy::check(&Raw {
            backup_type: "auto",
            save_days: Some(7),
            plan: Some(RawPlan {
                timezone_offset: zone,
                backup_at: days,
                period_type: "weekly",
                begin_at: window,
            }),
        })
        .expect("valid")
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn each_field_is_refused_with_its_own_error() {
        let plan = RawPlan {
            timezone_offset: None,
            backup_at: &[1],
            period_type: "weekly",
            begin_at: "00:00-01:00",
        };
        let check = |backup_type, save_days, plan: Option<RawPlan<'_>>| {
            Policy::check(&Raw {
                backup_type,
                save_days,
                plan,
            })
        };
        assert!(matches!(
            check("daily", Some(1), Some(plan.clone())),
            Err(PolicyError::BackupType(_))
        ));
        assert!(matches!(
            check("auto", None, Some(plan.clone())),
            Err(PolicyError::SaveDays(_))
        ));
        assert!(matches!(
            check("auto", Some(0), Some(plan.clone())),
            Err(PolicyError::SaveDays(_))
        ));
        assert!(matches!(
            check("auto", Some(3651), Some(plan.clone())),
            Err(PolicyError::SaveDays(_))
        ));
        assert!(check("auto", Some(3650), Some(plan.clone())).is_ok());
        assert!(matches!(
            check("auto", Some(1), None),
            Err(PolicyError::BeginAt(_))
        ));
        assert!(check("manual", None, None).is_ok());
        let with = |f: &dyn Fn(&mut RawPlan<'_>)| {
            let mut p = plan.clone();
            f(&mut p);
            check("auto", Some(1), Some(p))
        };
        assert!(matches!(
            with(&|p| p.period_type = "daily"),
            Err(PolicyError::PeriodType(_))
        ));
        assert!(matches!(
            with(&|p| p.backup_at = &[]),
            Err(PolicyError::BackupAt(_))
        ));
        assert!(matches!(
            with(&|p| p.backup_at = &[8]),
            Err(PolicyError::BackupAt(_))
        ));
        assert!(matches!(
            with(&|p| p.backup_at = &[0]),
            Err(PolicyError::BackupAt(_))
        ));
        for bad in [
            "",
            "00:00",
            "24:00-01:00",
            "1:00-2:00",
            "00:00-00:00",
            "aa:bb-cc:dd",
            "+1:00-02:00",
            "01:+0-02:00",
        ] {
            assert!(
                matches!(with(&|p| p.begin_at = bad), Err(PolicyError::BeginAt(_))),
                "{bad}"
            );
        }
        for bad in [
            "0800", "+1300", "+08", "UTC", "+08:60", "+0:800", "+08::00", "+0800:", "+:0800",
            "+12:01",
        ] {
            assert!(
                matches!(
                    with(&|p| p.timezone_offset = Some(bad)),
                    Err(PolicyError::TimezoneOffset(_))
                ),
                "{bad}"
            );
        }
        for ok in ["-1200", "+12:00", "+0530", "-05:30", "+0000"] {
            assert!(with(&|p| p.timezone_offset = Some(ok)).is_ok(), "{ok}");
        }
    }

    #[test]
    fn due_inside_the_window_of_a_planned_day_only() {
        // 2026-12-07 is a Monday.
        let p = auto(&[1, 3], "02:00-03:00", None);
        assert_eq!(p.due(at("2026-12-07T01:59:59Z")), None);
        let due = p.due(at("2026-12-07T02:00:00Z")).expect("due");
        assert_eq!(due.date.to_string(), "2026-12-07");
        assert_eq!(due.closes, at("2026-12-07T03:00:00Z"));
        assert!(p.due(at("2026-12-07T02:59:59Z")).is_some());
        assert_eq!(p.due(at("2026-12-07T03:00:00Z")), None);
        assert_eq!(
            p.due(at("2026-12-08T02:30:00Z")),
            None,
            "Tuesday is not planned"
        );
        assert!(p.due(at("2026-12-09T02:30:00Z")).is_some(), "Wednesday");
    }

    #[test]
    fn zones_and_windows_past_midnight() {
        // 02:00-03:00 at +0800 is 18:00-19:00 UTC the day before.
        let p = auto(&[1], "02:00-03:00", Some("+0800"));
        let due = p
            .due(at("2026-12-06T18:30:00Z"))
            .expect("Monday 02:30 in +0800");
        assert_eq!(due.date.to_string(), "2026-12-07");
        assert_eq!(due.closes, at("2026-12-06T19:00:00Z"));
        assert_eq!(p.due(at("2026-12-07T02:30:00Z")), None);
        // Sunday 23:00 to Monday 01:00 belongs to Sunday.
        let p = auto(&[7], "23:00-01:00", None);
        let due = p.due(at("2026-12-07T00:30:00Z")).expect("past midnight");
        assert_eq!(due.date.to_string(), "2026-12-06");
        assert_eq!(due.closes, at("2026-12-07T01:00:00Z"));
        assert!(p.due(at("2026-12-06T23:00:00Z")).is_some());
        assert_eq!(
            p.due(at("2026-12-07T23:30:00Z")),
            None,
            "Monday is not planned"
        );
        // Manual policies never fall due.
        let manual = Policy::check(&Raw {
            backup_type: "manual",
            ..Raw::default()
        })
        .expect("valid");
        assert_eq!(manual.due(at("2026-12-07T00:30:00Z")), None);
    }
}
