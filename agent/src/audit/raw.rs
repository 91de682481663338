//! `AuditService.StreamEvents` with events that are already encoded.
//!
//! The spool holds each event as protobuf bytes. A message field and a
//! `bytes` field with the same tag are the same on the wire (a tag and a
//! length-delimited payload), so [`RawEvents`] is read by the PDP as a
//! `StreamEventsRequest`, and the streamer sends spooled events as they
//! are, instead of decoding each one only to encode it again.

use bytes::Bytes;
use futures::Stream;
use palisade_proto::v1 as pb;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// `palisade.v1.StreamEventsRequest` with each `AuditEvent` pre-encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct RawEvents {
    /// Encoded `AuditEvent`s (`StreamEventsRequest.events`, tag 1).
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub events: Vec<Bytes>,
}

const STREAM_EVENTS: &str = "/palisade.v1.AuditService/StreamEvents";

/// Opens the call: what the generated `AuditServiceClient::stream_events`
/// does, with [`RawEvents`] as the request type.
pub(super) async fn stream_events(
    channel: Channel,
    requests: impl Stream<Item = RawEvents> + Send + 'static,
) -> Result<tonic::Streaming<pb::StreamEventsResponse>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("the service was not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<RawEvents, pb::StreamEventsResponse>::default();
    let response = grpc
        .streaming(
            tonic::Request::new(requests),
            PathAndQuery::from_static(STREAM_EVENTS),
            codec,
        )
        .await?;
    Ok(response.into_inner())
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn raw_events_are_a_stream_events_request_on_the_wire() {
        let events: Vec<pb::AuditEvent> = (1..=3)
            .map(|sequence| pb::AuditEvent {
                session_id: "s".into(),
                sequence,
                agent_id: "a".into(),
                event: Some(pb::audit_event::Event::Statement(pb::StatementExecuted {
                    text: format!("select {sequence}"),
                    ..Default::default()
                })),
                ..Default::default()
            })
            .collect();
        let raw = RawEvents {
            events: events
                .iter()
                .map(|e| Bytes::from(e.encode_to_vec()))
                .collect(),
        };
        let typed = pb::StreamEventsRequest {
            events: events.clone(),
        };
        assert_eq!(raw.encode_to_vec(), typed.encode_to_vec());
        let decoded = pb::StreamEventsRequest::decode(raw.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.events, events);
    }
}
