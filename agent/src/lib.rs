//! Palisade agent: a PostgreSQL wire-protocol gateway that asks the policy
//! service about every statement before relaying it to the database.
//!
//! Modules follow the data flow: `listener` → `frontend` → [`codec`] →
//! `analyze` → `enforce` → `backend` → `mask` → `audit`.

pub mod codec;
