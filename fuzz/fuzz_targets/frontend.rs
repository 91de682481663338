//! The client-side decoder in each connection state. The first byte picks
//! the state (0 startup, 1 authentication, 2 ready, 3 in COPY); the rest is
//! what the client sent. See `palisade_agent::codec::fuzz` for the
//! invariants (every accepted message re-encodes to the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::codec::fuzz;

fuzz_target!(|data: &[u8]| {
    let Some((&state, bytes)) = data.split_first() else {
        return;
    };
    match state % 4 {
        0 => fuzz::startup(bytes),
        1 => fuzz::authentication(bytes),
        2 => fuzz::ready(bytes),
        _ => fuzz::copy_in(bytes),
    }
});
