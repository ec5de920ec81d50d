//! Role weights and quotas changed at run time (Mesos `UPDATE_WEIGHTS`, `UPDATE_QUOTA`):
//! validated whole, applied to the allocator, recorded in the registry so a restarted or newly
//! elected master allocates the same way.
use std::collections::BTreeMap;

use super::State;
use crate::allocator::{Allocator, AllocatorError, Quota};
use crate::cluster::{
    ApiError,
    registry::{Change, RoleRecord},
};
use crate::resources::ScalarMap;

/// Applies a recorded role setting to the allocator.
pub(super) fn apply(
    allocator: &mut Allocator,
    role: &str,
    record: &RoleRecord,
) -> Result<(), ApiError> {
    if let Some(weight) = record.weight {
        allocator.set_weight(role, weight)?;
    }
    if record.guarantee.is_some() || record.limit.is_some() {
        allocator.set_quota(role, quota_of(record)?)?;
    }
    Ok(())
}

fn scalars(text: Option<&str>) -> Result<ScalarMap, ApiError> {
    match text {
        None | Some("") => Ok(ScalarMap::default()),
        Some(t) => ScalarMap::parse(t).map_err(|e| ApiError::BadRequest(e.to_string())),
    }
}

fn quota_of(record: &RoleRecord) -> Result<Quota, ApiError> {
    Ok(Quota {
        guarantee: scalars(record.guarantee.as_deref())?,
        limit: record
            .limit
            .as_deref()
            .map(|l| scalars(Some(l)))
            .transpose()?,
    })
}

impl State {
    /// Sets role weights; all or none (a bad weight or role refuses the call).
    pub(in crate::cluster) fn update_weights(
        &mut self,
        weights: &[(String, f64)],
    ) -> Result<(), ApiError> {
        let mut check = Allocator::new(self.config.allocator.clone());
        for (role, weight) in weights {
            check.set_weight(role, *weight).map_err(|e| {
                ApiError::BadRequest(format!("weight {weight} for role {role:?}: {e}"))
            })?;
        }
        for (role, weight) in weights {
            self.allocator.set_weight(role, *weight)?;
            let mut record = self.runtime_roles.get(role).cloned().unwrap_or_default();
            record.weight = Some(*weight);
            self.set_role(role, record)?;
        }
        Ok(())
    }

    /// Sets role quotas (a quota with no guarantee and no limit removes it); all or none.
    pub(in crate::cluster) fn update_quotas(
        &mut self,
        quotas: &[(String, Quota)],
    ) -> Result<(), ApiError> {
        let mut check = Allocator::new(self.config.allocator.clone());
        for (role, quota) in quotas {
            check
                .set_quota(role, quota.clone())
                .map_err(|e: AllocatorError| {
                    ApiError::BadRequest(format!("quota for role {role:?}: {e}"))
                })?;
        }
        for (role, quota) in quotas {
            self.allocator.set_quota(role, quota.clone())?;
            let mut record = self.runtime_roles.get(role).cloned().unwrap_or_default();
            record.guarantee = Some(quota.guarantee.to_string());
            record.limit = quota.limit.as_ref().map(ToString::to_string);
            self.set_role(role, record)?;
        }
        Ok(())
    }

    fn set_role(&mut self, role: &str, record: RoleRecord) -> Result<(), ApiError> {
        self.record(Change::RoleUpdated {
            role: role.to_owned(),
            record: record.clone(),
        })?;
        self.runtime_roles.insert(role.to_owned(), record);
        Ok(())
    }

    /// Roles whose weight is not the default 1.
    pub(in crate::cluster) fn weights(&self) -> BTreeMap<String, f64> {
        self.allocator
            .role_shares()
            .into_iter()
            .filter(|(_, weight, _)| *weight != 1.0)
            .map(|(role, weight, _)| (role.to_string(), weight))
            .collect()
    }

    /// Every role with a quota.
    pub(in crate::cluster) fn quotas(&self) -> BTreeMap<String, Quota> {
        self.allocator
            .quotas()
            .map(|(role, quota)| (role.to_owned(), quota.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::testing::state;

    #[test]
    fn weights_and_quotas_are_validated_whole_applied_and_recorded() {
        let mut s = state();
        s.update_weights(&[("prod".into(), 3.0), ("dev".into(), 0.5)])
            .unwrap();
        assert_eq!(s.weights()["prod"], 3.0);
        assert_eq!(s.store.load().unwrap().roles["dev"].weight, Some(0.5));
        // One bad weight refuses the whole call.
        let err = s
            .update_weights(&[("ops".into(), 2.0), ("bad".into(), -1.0)])
            .unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)), "{err}");
        assert!(!s.weights().contains_key("ops"));
        let quota = Quota {
            guarantee: ScalarMap::parse("cpus:2").unwrap(),
            limit: Some(ScalarMap::parse("cpus:4").unwrap()),
        };
        s.update_quotas(&[("prod".into(), quota.clone())]).unwrap();
        assert_eq!(s.quotas()["prod"], quota);
        let record = &s.store.load().unwrap().roles["prod"];
        assert_eq!(record.weight, Some(3.0));
        assert_eq!(record.limit.as_deref(), Some("cpus:4"));
        // A guarantee above its limit is refused.
        let bad = Quota {
            guarantee: ScalarMap::parse("cpus:8").unwrap(),
            limit: Some(ScalarMap::parse("cpus:4").unwrap()),
        };
        assert!(s.update_quotas(&[("dev".into(), bad)]).is_err());
        assert!(!s.quotas().contains_key("dev"));
    }
}
