//! Automatic backups: instances' backup policies ([`policy`]) and when
//! they fall due.

pub mod policy;
