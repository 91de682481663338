//! End-to-end test support: a throwaway PostgreSQL ([`postgres`]), free ports
//! ([`ports`]), the Palisade pieces over real mutual TLS ([`stack`]), an agent
//! with the example database ([`agent`]), real clients ([`clients`]), and a
//! wire tap showing what a client received ([`tap`]).

pub mod agent;
pub mod approvals;
pub mod clients;
pub mod ports;
pub mod postgres;
pub mod raw;
pub mod stack;
pub mod tap;
