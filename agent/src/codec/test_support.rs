//! Helpers shared by the codec's unit tests.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::{CodecError, Frame, FrameCodec};

/// Runs a builder and decodes the single frame it wrote.
pub(crate) fn built(build: impl FnOnce(&mut BytesMut) -> Result<(), CodecError>) -> Frame {
    let mut buf = BytesMut::new();
    build(&mut buf).unwrap();
    let wire = buf.clone();
    let frame = FrameCodec::new(1 << 24)
        .decode(&mut buf)
        .unwrap()
        .expect("a whole frame");
    assert!(buf.is_empty(), "builder wrote more than one message");
    assert_eq!(&frame.raw()[..], &wire[..]);
    frame
}

/// Like [`built`], for builders that cannot fail.
pub(crate) fn built_infallible(build: impl FnOnce(&mut BytesMut)) -> Frame {
    built(|buf| {
        build(buf);
        Ok(())
    })
}

/// Feeds every proper prefix of `frame` to the frame decoder (which must
/// wait) and every proper prefix of its body to `parses` (which must not
/// panic, and must fail when `prefixes_are_invalid`).
pub(crate) fn check_truncations(
    frame: &Frame,
    prefixes_are_invalid: bool,
    parses: impl Fn(&[u8]) -> bool,
) {
    let raw = frame.raw();
    for cut in 0..raw.len() {
        let mut src = BytesMut::from(&raw[..cut]);
        assert!(
            FrameCodec::new(1 << 24).decode(&mut src).unwrap().is_none(),
            "cut {cut}"
        );
    }
    let body = frame.body();
    for cut in 0..body.len() {
        let ok = parses(&body[..cut]);
        if prefixes_are_invalid {
            assert!(!ok, "body prefix of {cut} bytes parsed");
        }
    }
    assert!(parses(body), "the whole body must parse");
}
