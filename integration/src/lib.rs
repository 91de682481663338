//! End-to-end test support: a throwaway PostgreSQL ([`postgres`]), free ports
//! ([`ports`]), and the Palisade pieces over real mutual TLS ([`stack`]).

pub mod ports;
pub mod postgres;
pub mod stack;
