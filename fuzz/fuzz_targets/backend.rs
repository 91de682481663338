//! The upstream (PostgreSQL) message decoder: every message it accepts
//! re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::codec::fuzz;

fuzz_target!(|data: &[u8]| fuzz::backend(data));
