//! Registered instances.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Meta, MetaError, Result, from_ms, map_unique, now_ms};
use crate::redis_addr::RedisAddr;

/// How an instance is deployed, as DCS's `cache_mode` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One standalone server.
    Single,
    /// A master with replicas (DCS "master/standby").
    Ha,
    /// Redis Cluster.
    Cluster,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Ha => "ha",
            Mode::Cluster => "cluster",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Mode, String> {
        match s {
            "single" => Ok(Mode::Single),
            "ha" => Ok(Mode::Ha),
            "cluster" => Ok(Mode::Cluster),
            other => Err(format!(
                "unknown mode {other:?}; expected single, ha or cluster"
            )),
        }
    }
}

/// A Redis password; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub mode: Mode,
    pub addrs: Vec<RedisAddr>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewInstance {
    pub project_id: String,
    pub name: String,
    pub mode: Mode,
    pub addrs: Vec<RedisAddr>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls: bool,
}

/// The DCS `list_instances` filters that are properties of the registration.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct InstanceFilter {
    pub instance_id: Option<String>,
    /// Substring match on the name.
    pub name: Option<String>,
    /// Exact name.
    pub name_equal: Option<String>,
    /// Matches any of the instance's addresses' hosts.
    pub ip: Option<String>,
}

impl InstanceFilter {
    fn matches(&self, i: &Instance) -> bool {
        self.instance_id.as_ref().is_none_or(|id| &i.id == id)
            && self
                .name
                .as_ref()
                .is_none_or(|n| i.name.contains(n.as_str()))
            && self.name_equal.as_ref().is_none_or(|n| &i.name == n)
            && self
                .ip
                .as_ref()
                .is_none_or(|ip| i.addrs.iter().any(|a| &a.host == ip))
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    project_id: String,
    name: String,
    mode: String,
    addrs: String,
    username: Option<String>,
    password_sealed: Option<String>,
    tls: i64,
    created_at: i64,
    updated_at: i64,
}

impl Meta {
    fn instance(&self, r: Row) -> Result<Instance> {
        let corrupt = |what: &str| MetaError::Corrupt(format!("instance {}: {what}", r.id));
        let addrs: Vec<String> = serde_json::from_str(&r.addrs).map_err(|_| corrupt("addrs"))?;
        let addrs = addrs
            .iter()
            .map(|a| a.parse::<RedisAddr>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| corrupt("addrs"))?;
        // Every use of an instance starts from its first address.
        if addrs.is_empty() {
            return Err(corrupt("no address"));
        }
        Ok(Instance {
            mode: r.mode.parse().map_err(|_| corrupt("mode"))?,
            addrs,
            password: r
                .password_sealed
                .as_deref()
                .map(|sealed| self.keys().unseal(PASSWORD, &r.id, sealed))
                .transpose()?
                .map(|p| String::from_utf8(p).map(Secret))
                .transpose()
                .map_err(|_| corrupt("password"))?,
            tls: r.tls != 0,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
            id: r.id,
            project_id: r.project_id,
            name: r.name,
            username: r.username,
        })
    }
}

const COLUMNS: &str =
    "id, project_id, name, mode, addrs, username, password_sealed, tls, created_at, updated_at";

/// The associated-data name the password is sealed under.
const PASSWORD: &str = "instances.password";

impl Meta {
    pub async fn insert_instance(&self, new: NewInstance) -> Result<Instance> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let addrs: Vec<String> = new.addrs.iter().map(ToString::to_string).collect();
        let addrs_json =
            serde_json::to_string(&addrs).map_err(|e| MetaError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO instances (id, project_id, name, mode, addrs, username, password_sealed, tls, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(&id)
        .bind(&new.project_id)
        .bind(&new.name)
        .bind(new.mode.as_str())
        .bind(&addrs_json)
        .bind(new.username.as_deref())
        .bind(
            new.password
                .as_ref()
                .map(|p| self.keys().seal(PASSWORD, &id, p.0.as_bytes())),
        )
        .bind(i64::from(new.tls))
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(map_unique)?;
        Ok(Instance {
            id,
            project_id: new.project_id,
            name: new.name,
            mode: new.mode,
            addrs: new.addrs,
            username: new.username,
            password: new.password,
            tls: new.tls,
            created_at: from_ms(now),
            updated_at: from_ms(now),
        })
    }

    pub(crate) async fn get_instance(
        &self,
        project_id: &str,
        id: &str,
    ) -> Result<Option<Instance>> {
        let sql = format!("SELECT {COLUMNS} FROM instances WHERE project_id = $1 AND id = $2");
        let row: Option<Row> = sqlx::query_as(&sql)
            .bind(project_id)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| self.instance(r)).transpose()
    }

    /// An instance by id alone (the scheduler's policies name no project).
    pub(crate) async fn instance_by_id(&self, id: &str) -> Result<Option<Instance>> {
        let sql = format!("SELECT {COLUMNS} FROM instances WHERE id = $1");
        let row: Option<Row> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| self.instance(r)).transpose()
    }

    /// Instances of a project, oldest first, filtered.
    pub(crate) async fn list_instances(
        &self,
        project_id: &str,
        filter: &InstanceFilter,
    ) -> Result<Vec<Instance>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM instances WHERE project_id = $1 ORDER BY created_at, id"
        );
        let rows: Vec<Row> = sqlx::query_as(&sql)
            .bind(project_id)
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let instance = self.instance(row)?;
            if filter.matches(&instance) {
                out.push(instance);
            }
        }
        Ok(out)
    }

    /// Removes a registration. Refused while the instance still has backups
    /// that are not finished with, so no stored backup is orphaned.
    pub(crate) async fn delete_instance(&self, project_id: &str, id: &str) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let exists: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM instances WHERE project_id = $1 AND id = $2")
                .bind(project_id)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if exists == 0 {
            return Ok(false);
        }
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM backups WHERE instance_id = $1 \
             AND status NOT IN ('deleted', 'expired', 'failed')",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if live > 0 {
            return Err(MetaError::InUse(format!(
                "{live} backup(s) still hold data; delete them first"
            )));
        }
        let restoring = super::restores::active_into(&mut tx, id).await?;
        if restoring > 0 {
            return Err(MetaError::InUse(
                "a restore is writing into it; wait for it to end".into(),
            ));
        }
        // Records of finished backups and restores go with the registration.
        sqlx::query(
            "DELETE FROM restores WHERE instance_id = $1 OR target_instance_id = $1 \
             OR backup_id IN (SELECT id FROM backups WHERE instance_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM backup_files WHERE backup_id IN (SELECT id FROM backups WHERE instance_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM backup_policies WHERE instance_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM backups WHERE instance_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM instances WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
