//! The Palisade agent: a PostgreSQL wire-protocol gateway that puts a policy
//! decision in front of every statement.
//!
//! Modules follow the traffic: [`listener`] accepts a client and hands it to
//! one of the session [`threads`], where the session lives to its end;
//! [`frontend`] negotiates TLS and reads its startup and token; [`session`]
//! opens the session at the PDP ([`pdp`]), connects upstream ([`backend`])
//! and runs the two directions; on the way in, [`codec`] frames each message and
//! [`enforce`] decides each statement (analysis by `palisade_sql`); on the
//! way out, results are relayed. [`error`] maps every failure to what the
//! client sees. Nothing here is PostgreSQL-specific but [`codec`],
//! [`frontend`], [`backend`] and [`session`]: a second wire protocol plugs in
//! beside them and reuses [`enforce`], [`pdp`] and [`metrics`].

#![deny(missing_docs)]

pub mod audit;
pub mod backend;
pub mod codec;
pub mod config;
pub mod context;
pub mod credentials;
pub mod enforce;
pub mod error;
pub mod frontend;
pub mod listener;
pub mod masking;
pub mod metrics;
pub mod net;
pub mod pdp;
pub mod session;
pub mod threads;

/// The maps a session looks up for every statement (analyses by query
/// text, decisions, prepared statements and portals by name): a fast seeded
/// hash, since each is bounded and only hurts its own session if a client
/// aimed collisions at it.
pub(crate) type SessionMap<K, V> = foldhash::HashMap<K, V>;
