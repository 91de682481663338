//! The embedded approval store: every version of every approval appended to
//! one record file (`approvals.log`: length, CRC-32, protobuf), fsynced before
//! a call returns, and replayed into memory at open (the last record of an id
//! wins). A torn record at the end (a crash mid-write) is cut off.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use palisade_proto::v1 as pb;
use prost::Message as _;

use super::{ApprovalError, ApprovalStore, Change};

/// The record file's name inside the directory.
pub const FILE: &str = "approvals.log";

/// Approvals of one PDP in a local file.
pub struct EmbeddedApprovals {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    approvals: HashMap<String, pb::Approval>,
    /// Ids in creation order.
    order: Vec<String>,
}

impl EmbeddedApprovals {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, ApprovalError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut bytes)?;
        let mut approvals = HashMap::new();
        let mut order = Vec::new();
        let mut at = 0usize;
        while let Some((approval, next)) = record_at(&bytes, at) {
            if !approvals.contains_key(&approval.id) {
                order.push(approval.id.clone());
            }
            approvals.insert(approval.id.clone(), approval);
            at = next;
        }
        if at < bytes.len() {
            tracing::warn!(path = %path.display(), offset = at, "cutting off a torn approval record");
            file.set_len(u64::try_from(at).unwrap_or(u64::MAX))?;
            file.sync_all()?;
        }
        Ok(Self {
            path,
            inner: Mutex::new(Inner {
                file,
                approvals,
                order,
            }),
        })
    }

    /// The record file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn record_at(bytes: &[u8], at: usize) -> Option<(pb::Approval, usize)> {
    let header = bytes.get(at..at + 8)?;
    let len = u32::from_be_bytes(header.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(header.get(4..8)?.try_into().ok()?);
    let body = bytes.get(at + 8..at + 8 + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let approval = pb::Approval::decode(body).ok()?;
    Some((approval, at + 8 + len))
}

fn write_record(file: &mut File, approval: &pb::Approval) -> Result<(), ApprovalError> {
    let body = approval.encode_to_vec();
    let len = u32::try_from(body.len())
        .map_err(|_| ApprovalError::Storage("an approval record is too large".to_owned()))?;
    let mut record = Vec::with_capacity(body.len() + 8);
    record.extend_from_slice(&len.to_be_bytes());
    record.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    record.extend_from_slice(&body);
    file.write_all(&record)?;
    file.sync_data()?;
    Ok(())
}

#[tonic::async_trait]
impl ApprovalStore for EmbeddedApprovals {
    async fn insert(&self, approval: pb::Approval) -> Result<(), ApprovalError> {
        let mut inner = self.lock();
        if inner.approvals.contains_key(&approval.id) {
            return Err(ApprovalError::Conflict(format!(
                "approval {} exists already",
                approval.id
            )));
        }
        write_record(&mut inner.file, &approval)?;
        inner.order.push(approval.id.clone());
        inner.approvals.insert(approval.id.clone(), approval);
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<pb::Approval>, ApprovalError> {
        Ok(self.lock().approvals.get(id).cloned())
    }

    async fn list(&self, states: &[pb::ApprovalState]) -> Result<Vec<pb::Approval>, ApprovalError> {
        let inner = self.lock();
        Ok(inner
            .order
            .iter()
            .filter_map(|id| inner.approvals.get(id))
            .filter(|a| states.is_empty() || states.contains(&a.state()))
            .cloned()
            .collect())
    }

    async fn update(&self, id: &str, change: Change<'_>) -> Result<pb::Approval, ApprovalError> {
        let mut inner = self.lock();
        let mut approval = inner
            .approvals
            .get(id)
            .cloned()
            .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
        let before = approval.clone();
        change(&mut approval)?;
        if approval != before {
            write_record(&mut inner.file, &approval)?;
            inner.approvals.insert(id.to_owned(), approval.clone());
        }
        Ok(approval)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "tests fail on a broken assumption"
    )]

    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedApprovals::open(dir.path()).unwrap();
        super::super::testkit::conformance(&store).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_decision_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(EmbeddedApprovals::open(dir.path()).unwrap());
        super::super::testkit::one_decision_wins(store)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn approvals_survive_a_restart_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedApprovals::open(dir.path()).unwrap();
            super::super::testkit::conformance(&store).await.unwrap();
        }
        let before = {
            let store = EmbeddedApprovals::open(dir.path()).unwrap();
            store.list(&[]).await.unwrap()
        };
        assert!(!before.is_empty());
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap();
        f.write_all(&[0, 0, 1, 0, 1, 2]).unwrap();
        drop(f);
        let store = EmbeddedApprovals::open(dir.path()).unwrap();
        assert_eq!(store.list(&[]).await.unwrap(), before);
    }
}
