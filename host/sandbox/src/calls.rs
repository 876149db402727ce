//! The sandbox as the window engine's and the pipeline's tenant calls:
//! a [`TenantInstance`] implements the call traits they are written
//! against (natives stand in for it in tests and benchmarks).
//!
//! `AlertCalls` is still the host's pipeline's; with the pipeline in the
//! core crate both traits are below the sandbox.

use super::error::Result;
use super::instance::TenantInstance;
use sluice_core::data::{AddGroup, AlertResult, DataField, EventBatch, KeyGroup, WindowGroup};
use sluice_core::pipeline::AlertCalls;
use sluice_core::window::WindowCalls;

/// Delegates to the instance. Its `reads` is known once the instance has
/// run `init`: [`crate::TenantModule::instantiate`] does so, and
/// the answer is kept when a trap rebuilds the instance.
impl WindowCalls for TenantInstance {
    fn aggregate_add(
        &mut self,
        function: &str,
        groups: &[AddGroup<'_>],
        batch: &EventBatch,
    ) -> Result<Vec<Vec<u8>>> {
        TenantInstance::aggregate_add(self, function, groups, batch)
    }

    fn aggregate_merge(
        &mut self,
        function: &str,
        accumulators: &[&[&[u8]]],
        at_ms: i64,
    ) -> Result<Vec<Vec<u8>>> {
        TenantInstance::aggregate_merge(self, function, accumulators, at_ms)
    }

    fn aggregate_finish(
        &mut self,
        function: &str,
        windows: &[&[&[u8]]],
        at_ms: i64,
    ) -> Result<Vec<Vec<DataField>>> {
        TenantInstance::aggregate_finish(self, function, windows, at_ms)
    }

    fn process_window(
        &mut self,
        function: &str,
        windows: &[WindowGroup],
        batch: &EventBatch,
    ) -> Result<Vec<Vec<DataField>>> {
        TenantInstance::process_window(self, function, windows, batch)
    }

    fn reads(&self) -> &[u32] {
        TenantInstance::reads(self)
    }

    fn breached_limit(&mut self) {
        TenantInstance::breached_limit(self);
    }
}

impl AlertCalls for TenantInstance {
    fn alert(
        &mut self,
        function: &str,
        groups: &[KeyGroup],
        batch: &EventBatch,
    ) -> Result<Vec<AlertResult>> {
        TenantInstance::alert(self, function, groups, batch)
    }

    fn breached_limit(&mut self) {
        TenantInstance::breached_limit(self);
    }
}
