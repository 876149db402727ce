//! The checks of a deploy: those that need no running state (the module
//! against the manifest, `init` with its params), whether a redeploy can
//! carry the running state, and the broker resources no two tenants may
//! share.

use std::collections::BTreeMap;

use super::{Error, Result, Slot};
use crate::manifest::Manifest;
use crate::sandbox::TenantModule;

/// The broker resources a tenant's run uses, which no other tenant may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claim {
    queue: String,
    exchange: String,
}

impl Claim {
    pub(super) fn of(manifest: &Manifest) -> Claim {
        Claim {
            queue: manifest.input.queue.clone(),
            exchange: manifest.output.exchange.clone(),
        }
    }

    /// What of `self` another tenant's `theirs` uses too.
    pub(super) fn clash(&self, theirs: &Claim) -> Option<&'static str> {
        if theirs.queue == self.queue {
            Some("input queue")
        } else if theirs.exchange == self.exchange {
            Some("output exchange")
        } else {
            None
        }
    }
}

/// Refuses a manifest naming another tenant's queue or exchange — of a
/// running tenant or of a deploy committed and not started yet: a tenant
/// must not read another's input or write into its results.
pub(super) fn unclaimed_in(
    tenants: &BTreeMap<String, Slot>,
    claims: &BTreeMap<String, Claim>,
    manifest: &Manifest,
) -> Result<()> {
    let mine = Claim::of(manifest);
    let running = tenants
        .iter()
        .map(|(t, slot)| (t, Claim::of(&slot.run.manifest)));
    let committed = claims.iter().map(|(t, c)| (t, c.clone()));
    for (other, theirs) in running
        .chain(committed)
        .filter(|(t, _)| **t != manifest.tenant)
    {
        if let Some(what) = mine.clash(&theirs) {
            tracing::warn!(tenant = %manifest.tenant, %other, what, "refused: names another tenant's broker resource");
            return Err(Error::Conflict {
                tenant: manifest.tenant.clone(),
                message: format!("its {what} belongs to another tenant"),
            });
        }
    }
    Ok(())
}

/// The checks of a deploy that need no running state.
pub(super) fn check(manifest: &Manifest, module: &TenantModule) -> Result<()> {
    manifest
        .check_module(module.info())
        .map_err(|e| Error::Mismatch(Box::new(e)))?;
    // `init` with the manifest's params: a bad param fails the deploy, not
    // the first event.
    module
        .instantiate(
            manifest.params_list(),
            manifest.schema(),
            manifest.limits.clone(),
        )
        .map_err(Error::module)?;
    Ok(())
}

/// A redeploy carries state over only when its shape stays.
pub(super) fn compatible(old: &Manifest, new: &Manifest) -> Result<()> {
    let what = if old.input.columns != new.input.columns {
        "its columns"
    } else if old.input.key != new.input.key {
        "its key"
    } else if old.windows != new.windows {
        "its windows"
    } else if old.input.queue != new.input.queue {
        "its input queue"
    } else if old.input.partitions != new.input.partitions {
        "its partitions"
    } else {
        return Ok(());
    };
    Err(Error::Conflict {
        tenant: new.tenant.clone(),
        message: format!(
            "a redeploy keeps the running state, so it cannot change {what}; undeploy first"
        ),
    })
}
