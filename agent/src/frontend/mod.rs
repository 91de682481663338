//! The client side: TLS negotiation, the startup packet, the token in the
//! password message, and cancel requests.

mod handshake;
mod tls;

pub use handshake::{Hello, Knock, accept, refuse};
pub use tls::{MAX_RECORD_BYTES, server_config};
