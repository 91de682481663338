//! `PolicyService`: which policy set is active, and why an edit was refused.

use palisade_proto::v1 as pb;
use pb::policy_service_server::PolicyService;
use tonic::{Request, Response, Status};

use super::convert::timestamp_to_pb;
use crate::policy::PolicyStore;

/// The gRPC service.
pub struct PolicyApi {
    store: PolicyStore,
}

impl PolicyApi {
    /// A service reporting on `store`.
    pub fn new(store: PolicyStore) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl PolicyService for PolicyApi {
    async fn get_policy_status(
        &self,
        _request: Request<pb::GetPolicyStatusRequest>,
    ) -> Result<Response<pb::GetPolicyStatusResponse>, Status> {
        let snapshot = self.store.current();
        let rejected = self.store.rejected();
        Ok(Response::new(pb::GetPolicyStatusResponse {
            version: snapshot.version.clone(),
            loaded_at: Some(timestamp_to_pb(snapshot.loaded_at)),
            files: snapshot.files.clone(),
            policy_ids: snapshot.policy_ids(),
            rejected_at: rejected.as_ref().map(|r| timestamp_to_pb(r.at)),
            rejected_problems: rejected
                .map(|r| {
                    r.problems
                        .into_iter()
                        .map(|p| pb::PolicyProblem {
                            file: p.file,
                            line: p.line,
                            column: p.column,
                            message: p.message,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }))
    }
}
