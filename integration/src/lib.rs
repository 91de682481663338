//! End-to-end test support: a throwaway PostgreSQL ([`postgres`]), free ports
//! ([`ports`]), the Palisade pieces over real mutual TLS ([`stack`]), an agent
//! with the example database ([`agent`]), and real clients ([`clients`]).

pub mod agent;
pub mod clients;
pub mod ports;
pub mod postgres;
pub mod raw;
pub mod stack;
