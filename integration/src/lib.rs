//! End-to-end test support: a throwaway PostgreSQL ([`postgres`]), free ports
//! ([`ports`]), the Palisade pieces over real mutual TLS ([`stack`]), an agent
//! with the example database ([`agent`]) or with a PDP process a test can
//! kill ([`process_stack`]), real clients ([`clients`]), a wire tap showing
//! what a client received ([`tap`]), and checks on the database itself
//! ([`database`]).

pub mod agent;
pub mod approvals;
pub mod clients;
pub mod database;
pub mod ports;
pub mod postgres;
pub mod process_stack;
pub mod raw;
pub mod stack;
pub mod tap;
