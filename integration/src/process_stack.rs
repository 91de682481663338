//! A stack whose PDP runs as a child process, for tests that kill or restart
//! it ([`crate::agent::Stack`] runs its PDP inside the test process, where it
//! cannot be killed).

use crate::agent::{RunningAgent, agent_config, seed_example};
use crate::ports::free_port;
use crate::postgres::TestPostgres;
use crate::stack::{Fixture, PdpProcess};

/// The example database, a PDP process on a free loopback port, and an
/// in-process agent using it.
///
/// Fields drop in declaration order: the agent first, the fixture (and its
/// files) last.
pub struct PdpProcessStack {
    /// The agent.
    pub agent: RunningAgent,
    /// The PDP process.
    pub pdp: PdpProcess,
    /// The database, seeded with the example schema.
    pub pg: TestPostgres,
    /// PKI, issuer, policies.
    pub fixture: Fixture,
}

impl PdpProcessStack {
    /// Starts the database, the PDP process and the agent.
    pub async fn start() -> anyhow::Result<Self> {
        let fixture = Fixture::new()?;
        let pg = TestPostgres::start().await?;
        seed_example(&pg).await?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let pdp = PdpProcess::start(&fixture, addr).await?;
        let config = agent_config(&fixture, &pdp.url(), &pg)?;
        let agent = RunningAgent::start(config, fixture.certs.ca.cert.clone()).await?;
        Ok(Self {
            agent,
            pdp,
            pg,
            fixture,
        })
    }
}
