//! The control plane's changes — deploy, undeploy, shutdown — arranged so
//! that none waits on a tenant's data path while holding anything another
//! tenant, `list` or `/readyz` needs:
//! - a deploy is checked (manifest, compile, `init`) with no lock at all;
//! - one change at a time *per tenant* (`busy`): a second deploy or
//!   undeploy of the same tenant is refused with 409, never queued;
//! - the old run is told to stop at a barrier and then *polled* (the map
//!   of tenants is locked only to look), so a slow drain — a trapping
//!   module's delivered backlog — costs that tenant alone; the old version
//!   stays listed and serving until the new one takes its place;
//! - a deploy answers within `deploy_wait`: if the old version is still
//!   draining then, it answers 202 and the swap completes on its own;
//! - the commit point is the moment the old run is told to stop. A deploy
//!   whose client disconnected before then is cancelled (nothing applied,
//!   logged); once committed it completes and is logged, whether or not
//!   anyone still listens;
//! - a deploy claims its queue and exchange at the commit point, under the
//!   same lock as it checks that no other tenant has them (`claims`), so
//!   two tenants deployed at once cannot both take a queue; the claim is
//!   released once the run is in place (which holds them from then on) or
//!   the deploy failed;
//! - single and partitioned runs stop alike: told to stop, then polled
//!   (`Run::finished`), joined only once over;
//! - a run stuck in a guest call (the watchdog's `fault`) is abandoned by
//!   undeploy and shutdown; a redeploy of it is refused (undeploy first).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tenant::{self, Run};
use super::{
    check, compatible, rewrite_module, view, write_atomic, Error, GuestUse, Host, Result, Slot,
    TenantView,
};
use crate::manifest::{Manifest, TenantName};
use crate::metrics::Counters;
use crate::sandbox::TenantModule;

/// How often a waiting change looks at the run it waits for.
const POLL: Duration = Duration::from_millis(20);

/// What a deploy answers.
#[derive(Debug)]
pub enum Deployed {
    /// The new version runs.
    Done(TenantView),
    /// Committed, and the old version is still draining after
    /// `deploy_wait`: the view is the old version's, `operation` is
    /// `redeploying`; the swap completes without the caller.
    Pending(TenantView),
}

/// A committed deploy's claim on its queue and exchange, taken under the
/// tenants' lock at the commit point; released when dropped — after the
/// swap put the run (which then holds them) in place, or failed.
struct Reserved {
    host: Arc<Host>,
    tenant: String,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.host.claims().remove(&self.tenant);
    }
}

/// A tenant marked busy for one change; unmarked when dropped.
struct Busy {
    host: Arc<Host>,
    tenant: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.host
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.tenant);
    }
}

impl Host {
    fn mark_busy(self: &Arc<Self>, tenant: &TenantName) -> Result<Busy> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(Error::Conflict {
                tenant: tenant.to_string(),
                message: "the host is shutting down".into(),
            });
        }
        let fresh = self
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.to_string());
        if !fresh {
            return Err(Error::Conflict {
                tenant: tenant.to_string(),
                message: "another deploy or undeploy of this tenant is under way; try again \
                          once it has finished"
                    .into(),
            });
        }
        Ok(Busy {
            host: Arc::clone(self),
            tenant: tenant.to_string(),
        })
    }

    /// Deploys or redeploys `tenant` from an uploaded manifest and module.
    /// Everything is checked before a running version is touched; `gone`
    /// set before the commit point cancels the deploy.
    pub fn deploy(
        self: &Arc<Self>,
        tenant: &TenantName,
        manifest_text: &str,
        wasm: &[u8],
        gone: &AtomicBool,
    ) -> Result<Deployed> {
        let origin = std::path::Path::new("manifest.toml");
        let mut manifest = Manifest::parse(manifest_text, origin)?;
        if manifest.tenant != tenant.as_str() {
            return Err(Error::TenantMismatch {
                manifest: manifest.tenant,
                path: tenant.to_string(),
            });
        }
        // Over a ceiling is refused before the module is compiled.
        self.engine
            .check_limits(tenant, &manifest.limits)
            .map_err(Error::module)?;
        crate::pipeline::Ceilings::host()
            .check(&manifest)
            .map_err(|source| Error::OverCeiling {
                tenant: tenant.to_string(),
                source,
            })?;
        let module = self.engine.load(tenant, wasm).map_err(Error::module)?;
        check(&manifest, &module)?;
        let busy = self.mark_busy(tenant)?;
        crate::state::failpoint::delay_if_armed("deploy-delay", tenant, Duration::from_secs(3));
        let dir = self.tenant_dir(tenant).join("deployed");
        manifest.module = dir.join("module.wasm");
        let reserved = {
            let mut tenants = self.tenants();
            if let Some(slot) = tenants.get(tenant.as_str()) {
                compatible(&slot.run.manifest, &manifest)?;
                if let Some(fault) = &slot.fault {
                    return Err(Error::Conflict {
                        tenant: tenant.to_string(),
                        message: format!(
                            "{} (a redeploy cannot take over its state)",
                            fault.reason
                        ),
                    });
                }
            }
            let mut claims = self.claims();
            super::unclaimed_in(&tenants, &claims, &manifest)?;
            // The commit point.
            if gone.load(Ordering::Acquire) {
                tracing::warn!(%tenant, "deploy cancelled: its client disconnected before it was applied");
                return Err(Error::Cancelled(tenant.to_string()));
            }
            // Claimed in the same step as checked: a concurrent deploy of
            // another tenant sees this one from now on.
            claims.insert(tenant.to_string(), super::Claim::of(&manifest));
            if let Some(slot) = tenants.get_mut(tenant.as_str()) {
                slot.operation = Some("redeploying");
                slot.run.begin_stop(true);
            }
            Reserved {
                host: Arc::clone(self),
                tenant: tenant.to_string(),
            }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let host = Arc::clone(self);
        let name = tenant.clone();
        let text = manifest_text.to_owned();
        let wasm = wasm.to_vec();
        std::thread::Builder::new()
            .name(format!("sluice-deploy-{tenant}"))
            .spawn(move || {
                crate::state::failpoint::delay_if_armed(
                    "swap-delay",
                    &name,
                    Duration::from_secs(1),
                );
                let result = host.swap(&name, manifest, module, &text, &wasm);
                // Released before the answer: a client told of the end of
                // this deploy may start the next change at once.
                drop(reserved);
                drop(busy);
                match &result {
                    Ok(v) => tracing::info!(tenant = %name, module = %v.module.sha256, "deployed"),
                    Err(e) => tracing::warn!(tenant = %name, error = %e, "deploy failed"),
                }
                let _ = tx.send(result);
            })
            .map_err(|e| Error::Internal(format!("starting the deploy thread: {e}")))?;
        match rx.recv_timeout(self.config.deploy_wait) {
            Ok(result) => result.map(Deployed::Done),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::Internal(
                "the deploy thread ended without an answer".into(),
            )),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let view = self
                    .get(tenant)
                    .ok_or_else(|| Error::NotFound(tenant.to_string()))?;
                tracing::info!(%tenant, "the redeploy goes on: the old version is still draining");
                Ok(Deployed::Pending(view))
            }
        }
    }

    /// Waits for `tenant`'s stopping run to end: `Ok(true)` once it has,
    /// `Ok(false)` if it is not there; an error if the watchdog finds it
    /// stuck meanwhile.
    fn wait_stopped(&self, tenant: &str) -> Result<bool> {
        loop {
            {
                let tenants = self.tenants();
                let Some(slot) = tenants.get(tenant) else {
                    return Ok(false);
                };
                if slot.run.finished() {
                    return Ok(true);
                }
                if let Some(fault) = &slot.fault {
                    return Err(Error::Conflict {
                        tenant: tenant.to_owned(),
                        message: fault.reason.clone(),
                    });
                }
            }
            std::thread::sleep(POLL);
        }
    }

    /// The committed part of a deploy: the old run (told to stop) ends,
    /// the new one starts from its checkpoint and takes its place in one
    /// step; the old one stays listed until then.
    fn swap(
        &self,
        tenant: &TenantName,
        manifest: Manifest,
        module: TenantModule,
        manifest_text: &str,
        wasm: &[u8],
    ) -> Result<TenantView> {
        let redeploy = self.wait_stopped(tenant)?;
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(Error::Conflict {
                tenant: tenant.to_string(),
                message: "the host is shutting down; the previous version is suspended and \
                          comes back with the host"
                    .into(),
            });
        }
        let (counters, before, paused, previous) = if redeploy {
            let tenants = self.tenants();
            match tenants.get(tenant.as_str()) {
                Some(slot) => (
                    Arc::clone(&slot.counters),
                    slot.guest_use(),
                    slot.paused.clone(),
                    Some((slot.run.manifest.clone(), slot.run.module.clone())),
                ),
                None => (Arc::new(Counters::new()), GuestUse::default(), None, None),
            }
        } else {
            (Arc::new(Counters::new()), GuestUse::default(), None, None)
        };
        let checkpoints = tenant::checkpoint_dir(&self.tenant_dir(tenant));
        let started = Run::start(
            &self.env,
            manifest,
            module,
            &checkpoints,
            Arc::clone(&counters),
        );
        let run = match started {
            Ok(run) => run,
            Err(e) => {
                // Put the previous version back (from the checkpoint it just
                // took) rather than leave the tenant stopped.
                let back = previous.map(|(manifest, module)| {
                    Run::start(
                        &self.env,
                        manifest,
                        module,
                        &checkpoints,
                        Arc::clone(&counters),
                    )
                });
                let mut tenants = self.tenants();
                match back {
                    Some(Ok(run)) => {
                        if paused.is_some() {
                            drop(run.pause());
                        }
                        let slot = Slot::new(run, counters, before, paused);
                        if let Some(old) = tenants.insert(tenant.to_string(), slot) {
                            finish_old(tenant, old.run);
                        }
                    }
                    Some(Err(again)) => {
                        tracing::error!(%tenant, error = %again, "restarting the previous version failed too");
                        if let Some(slot) = tenants.get_mut(tenant.as_str()) {
                            slot.operation = None;
                            slot.fault = Some(super::Fault {
                                stuck: false,
                                reason: format!(
                                    "a redeploy failed ({e}) and the previous version did not \
                                     restart ({again})"
                                ),
                            });
                        }
                    }
                    None => {}
                }
                return Err(e);
            }
        };
        if paused.is_some() {
            drop(run.pause());
        }
        // Keep the files of the version now running: the host restarts
        // with them.
        let dir = self.tenant_dir(tenant).join("deployed");
        let n = self.deploys.fetch_add(1, Ordering::Relaxed);
        let stored = std::fs::create_dir_all(&dir)
            .and_then(|()| {
                write_atomic(
                    &dir.join(format!(".module.{n}.tmp")),
                    &dir.join("module.wasm"),
                    wasm,
                )
            })
            .and_then(|()| {
                // The stored manifest points at the stored module.
                let text = rewrite_module(manifest_text, "module.wasm");
                write_atomic(
                    &dir.join(format!(".manifest.{n}.tmp")),
                    &dir.join("manifest.toml"),
                    text.as_bytes(),
                )
            });
        if let Err(e) = stored {
            tracing::error!(%tenant, error = %e, "storing the deployed files failed: a restart will not bring this version back");
        }
        let slot = Slot::new(run, counters, before, paused);
        let view = view(tenant, &slot);
        let old = {
            let mut tenants = self.tenants();
            let mut old = tenants.insert(tenant.to_string(), slot);
            // The sparklines go on across a redeploy.
            if let (Some(old), Some(new)) = (old.as_mut(), tenants.get_mut(tenant.as_str())) {
                new.history = std::mem::take(&mut old.history);
            }
            old
        };
        if let Some(old) = old {
            finish_old(tenant, old.run);
        }
        Ok(view)
    }

    /// Stops `tenant` for good: its open windows fire, its input is acked,
    /// its state and deployed files are deleted. A run stuck in a guest
    /// call is abandoned (its delivered messages go back to the queue).
    pub fn undeploy(self: &Arc<Self>, tenant: &TenantName) -> Result<TenantView> {
        let _busy = self.mark_busy(tenant)?;
        // A partitioned tenant's counters are those of the partitions this
        // host owns, which are gone once stopped: its last view is taken
        // before the stop.
        let before = {
            let mut tenants = self.tenants();
            let slot = tenants
                .get_mut(tenant.as_str())
                .ok_or_else(|| Error::NotFound(tenant.to_string()))?;
            let before = slot
                .run
                .manifest
                .input
                .partitions
                .map(|_| view(tenant, slot));
            slot.operation = Some("undeploying");
            slot.run.begin_stop(false);
            before
        };
        let partitioned = before.is_some();
        let stuck = self.wait_stopped(tenant).is_err();
        let Some(slot) = self.tenants().remove(tenant.as_str()) else {
            return Err(Error::NotFound(tenant.to_string()));
        };
        let mut last = view(tenant, &slot);
        if let Some(before) = before {
            last.counters = before.counters;
            last.partitions = before.partitions;
        }
        last.operation = None;
        let log = slot.run.module.log().clone();
        if stuck {
            tracing::warn!(%tenant, "undeploy: abandoning a run stuck in a guest call");
            slot.run.abandon();
        } else {
            if let Err(e) = slot.run.finish() {
                tracing::warn!(%tenant, error = %e, "the tenant's run ended with an error");
            }
            if !partitioned {
                // A single run's counters, with what its end fired.
                last.counters = super::counters_view(
                    &slot.counters.snapshot(Duration::ZERO),
                    last.counters.guest_traps,
                );
            }
        }
        log.flush();
        self.env.checkpoint_metrics.remove(tenant);
        self.env.latency_metrics.remove(tenant);
        self.env.dead_letters.remove(tenant);
        let dir = self.tenant_dir(tenant);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(%tenant, error = %e, "removing the tenant's state");
        }
        tracing::info!(%tenant, "undeployed");
        Ok(last)
    }

    /// Suspends every tenant at a checkpoint (open windows kept for the
    /// next start), all at once, and waits for them up to
    /// `shutdown_timeout`. Returns the tenants that could not be suspended
    /// in time, with why (their unacked messages are redelivered to the
    /// next start).
    pub fn shutdown(&self) -> Vec<(String, String)> {
        self.shutting_down.store(true, Ordering::Release);
        for slot in self.tenants().values() {
            slot.run.begin_stop(true);
        }
        let deadline = Instant::now() + self.config.shutdown_timeout;
        loop {
            let waiting = self
                .tenants()
                .values()
                .filter(|s| s.fault.is_none() && !s.run.finished())
                .count();
            if waiting == 0 || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        let slots = std::mem::take(&mut *self.tenants());
        let mut left = Vec::new();
        for (tenant, slot) in slots {
            let log = slot.run.module.log().clone();
            if slot.run.finished() {
                match slot.run.finish() {
                    Ok(()) => tracing::info!(%tenant, "suspended"),
                    Err(e) => {
                        tracing::warn!(%tenant, error = %e, "the tenant's run ended with an error")
                    }
                }
            } else {
                let why = slot.fault.map(|f| f.reason).unwrap_or_else(|| {
                    format!(
                        "its run did not reach a checkpoint within {}",
                        crate::manifest::format_duration(self.config.shutdown_timeout)
                    )
                });
                tracing::warn!(%tenant, reason = %why, "not suspended: its delivered messages are redelivered at the next start");
                slot.run.abandon();
                left.push((tenant, why));
            }
            log.flush();
        }
        left
    }
}

/// Joins a replaced run (its thread has ended).
fn finish_old(tenant: &TenantName, run: Run) {
    if let Err(e) = run.finish() {
        tracing::warn!(%tenant, error = %e, "the previous version ended with an error");
    }
}
