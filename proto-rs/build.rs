//! Compiles the palisade.v1 contract with protox (pure Rust), so a fresh machine
//! needs no protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "common.proto",
        "decision.proto",
        "audit.proto",
        "approval.proto",
        "session.proto",
        "policy.proto",
    ]
    .map(|f| format!("../proto/palisade/v1/{f}"));
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(&files, ["../proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Encoded events pass through without a copy: slices of the
        // received buffer, or of the spool's.
        .bytes(".palisade.v1.StreamEventsRequest.events")
        .bytes(".palisade.v1.GetSessionEventsResponse.payload")
        .compile_fds(fds)?;
    Ok(())
}
