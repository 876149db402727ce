//! Typed errors of tenant modules and their calls: what failed, for which
//! tenant and function, and whether the module (rejected) or one call
//! (trap, limit) is at fault. Here, beside the data model, because the
//! window engine and the pipeline decide on them (isolate the poison
//! input, count a trap) whatever runs the calls: the sandbox or a native
//! stand-in.

use std::time::Duration;

/// Result of sandbox operations.
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

/// The version of the sluice contract (`wit/sluice.wit`'s package) this
/// host links; a component built for another is refused at load, by name.
pub const CONTRACT: &str = "0.4.0";

/// Why a component was refused at load time. The running version of a
/// tenant (if any) is unaffected by a rejection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("not a WebAssembly binary (no `\\0asm` header)")]
    NotWasm,
    /// A Wasm header with a layer that is neither a core module (0) nor a
    /// component (1).
    #[error(
        "a WebAssembly binary of unknown layer {layer} (version {version}): sluice runs \
         components (layer 1)"
    )]
    UnknownLayer { version: u16, layer: u16 },
    /// The module path names something other than a regular file (a
    /// device such as `/dev/zero` would be read forever).
    #[error("not a regular file ({0}); a module must be a `.wasm` file")]
    NotAFile(String),
    /// Bigger than the host's module-size ceiling (compiling costs memory
    /// in proportion).
    #[error(
        "{size} bytes, over the host's module-size ceiling of {ceiling} bytes (ceiling \
         `module_size`)"
    )]
    TooLarge { size: u64, ceiling: u64 },
    /// The compile took longer than the host's compile-time ceiling, or
    /// waited that long for a compile slot.
    #[error("{0}")]
    CompileTime(String),
    #[error(
        "a core WebAssembly module, not a component: build the tenant for \
         `wasm32-wasip2` so that cargo emits a component"
    )]
    CoreModule,
    #[error("does not compile: {0}")]
    Compile(String),
    #[error(
        "imports {}, which the sluice sandbox does not provide (tenants get no files, \
         network or other authority; allowed: sluice:analytics/host and the deterministic \
         WASI subset of io, cli, clocks and random)",
        .0.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
    )]
    ForbiddenImports(Vec<String>),
    #[error("does not target the sluice world `sluice:analytics/tenant@{contract}`: {0}", contract = CONTRACT)]
    WrongWorld(String),
    /// Built for another version of the contract (an SDK of another
    /// release). Nothing of the tenant's is touched: its checkpoints hold
    /// its own accumulator and state bytes, which a rebuild keeps reading.
    #[error(
        "was built for the sluice contract {found}, but this host runs {}: rebuild the tenant \
         with this release's SDK (`sluice build DIR`) and deploy it again; its checkpoints and \
         state are kept",
        CONTRACT
    )]
    OtherContract { found: String },
    #[error("`describe` failed: {0}")]
    Describe(String),
    /// One instance would take more of the instance pool than the host's
    /// ceiling allows (counted from the binary at load).
    #[error(
        "one instance takes {needed} {what}, over the host's ceiling of {ceiling} (ceiling \
         `{setting}`)"
    )]
    InstanceResources {
        what: &'static str,
        setting: &'static str,
        needed: u32,
        ceiling: u32,
    },
}

/// Longest guest message kept (errors, traps, dead letters, logs): a guest
/// decides its message's length, the host decides what it holds.
pub const MAX_GUEST_MESSAGE: usize = 4096;

/// Cuts a guest-made message to [`MAX_GUEST_MESSAGE`] bytes on a char
/// boundary, saying that it was cut and how long it was.
pub fn cut_message(message: String) -> String {
    if message.len() <= MAX_GUEST_MESSAGE {
        return message;
    }
    let mut end = MAX_GUEST_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [cut to {end} of {} bytes]",
        &message[..end],
        message.len()
    )
}

/// Which per-call bound a guest ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// The call ran longer than its CPU budget (epoch deadline).
    Cpu { budget: Duration },
    /// The instance tried to grow its memory past the cap (bytes).
    Memory { cap: u64 },
    /// One key group or window would make the host emit more than the
    /// output cap (bytes; `size` is what it would have emitted).
    Output { cap: u64, size: u64 },
    /// The results of one call would take more than the host's per-call
    /// ceiling, though no single item is over its cap (bytes).
    CallOutput { cap: u64, size: u64 },
    /// The guest tried to sleep or wait: guest calls may not block, so the
    /// wait is refused at once (the pinned clock would never get there).
    Wait { requested: Duration },
    /// The host's instance pool had no room for one more instance (all its
    /// slots taken by this and other tenants): the host's capacity, not
    /// the tenant's fault, so never a trap; `pool` is what ran out.
    Pool { pool: String },
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Cpu { budget } => write!(f, "CPU budget of {budget:?} per call"),
            Limit::Memory { cap } => write!(f, "memory cap of {cap} bytes"),
            Limit::Output { cap, size } => write!(
                f,
                "output cap of {cap} bytes per key group or window (one would emit {size} bytes)"
            ),
            Limit::CallOutput { cap, size } => write!(
                f,
                "host's ceiling of {cap} bytes of results per call (this one returned {size} \
                 bytes; it is retried in smaller calls)"
            ),
            Limit::Pool { pool } => write!(
                f,
                "host's instance pool: {pool} (the host is at capacity; ceilings \
                 `core_instances`, `memories`, `tables` and the worker count size it)"
            ),
            Limit::Wait { requested } => write!(
                f,
                "call deadline: it tried to wait {requested:?}, and guest calls may not sleep \
                 or wait (refused at once)"
            ),
        }
    }
}

/// Errors of the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The component was refused at load; nothing was deployed.
    #[error("tenant `{tenant}`: module rejected: {reason}")]
    Rejected {
        tenant: String,
        reason: RejectReason,
    },
    /// A call hit a limit; the instance was discarded, host state unchanged.
    #[error("tenant `{tenant}`: `{function}` exceeded its {limit}")]
    LimitExceeded {
        tenant: String,
        function: String,
        limit: Limit,
    },
    /// A call trapped (panic, unreachable, bad memory access); the instance
    /// was discarded, host state unchanged.
    #[error("tenant `{tenant}`: `{function}` trapped: {message}")]
    Trap {
        tenant: String,
        function: String,
        message: String,
    },
    /// The guest returned an error value on purpose; the instance stays.
    #[error("tenant `{tenant}`: `{function}` failed: {message}")]
    Guest {
        tenant: String,
        function: String,
        message: String,
    },
    /// The guest answered with something that breaks the contract (e.g. a
    /// different number of results than inputs).
    #[error("tenant `{tenant}`: `{function}` broke the contract: {message}")]
    Contract {
        tenant: String,
        function: String,
        message: String,
    },
    /// Reading a module or the compilation cache failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A declared limit is over the host's ceiling: refused at load.
    #[error("tenant `{tenant}`: {source}")]
    OverCeiling {
        tenant: String,
        /// Boxed: keeps `SandboxError` (in every `Result` of a call) small.
        #[source]
        source: Box<OverCeiling>,
    },
    /// The engine itself could not be set up or could not instantiate.
    #[error("sandbox engine: {0}")]
    Engine(String),
}

impl SandboxError {
    /// True when the failing call trapped (a plain trap, the CPU or
    /// memory limit, a refused wait) and so discarded its instance.
    pub fn is_trap(&self) -> bool {
        matches!(
            self,
            SandboxError::Trap { .. }
                | SandboxError::LimitExceeded {
                    limit: Limit::Cpu { .. } | Limit::Memory { .. } | Limit::Wait { .. },
                    ..
                }
        )
    }

    /// True when the failure counts as a trap for the trap backoff and
    /// `serve`'s auto-pause: a trap, or any limit that one key group or
    /// window breached on its own (not the per-call ceiling, which is the
    /// host's batching, not a tenant's fault).
    pub fn counts_as_trap(&self) -> bool {
        self.is_trap()
            || matches!(
                self,
                SandboxError::LimitExceeded {
                    limit: Limit::Output { .. },
                    ..
                }
            )
    }

    /// True when the failure is caused by what the call was given (a trap,
    /// a limit, an error value): callers isolate the poison input by
    /// retrying smaller pieces. False for engine and I/O failures, and for
    /// a full instance pool (no input is to blame).
    pub fn is_caused_by_input(&self) -> bool {
        !matches!(
            self,
            SandboxError::LimitExceeded {
                limit: Limit::Pool { .. },
                ..
            }
        ) && matches!(
            self,
            SandboxError::Trap { .. }
                | SandboxError::LimitExceeded { .. }
                | SandboxError::Guest { .. }
                | SandboxError::Contract { .. }
        )
    }

    /// The limit hit, when this is a limit error.
    pub fn limit(&self) -> Option<&Limit> {
        match self {
            SandboxError::LimitExceeded { limit, .. } => Some(limit),
            _ => None,
        }
    }
}

/// A declared limit over a host ceiling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "[limits] {limit} = {declared} is over the host's ceiling of {ceiling} (ceiling `{setting}`: \
     `sluice run --max-{flag}`, or `{setting}` under `[ceilings]` in host.toml)"
)]
pub struct OverCeiling {
    /// The manifest key (`call_budget`, `memory`, `max_output`).
    pub limit: &'static str,
    pub declared: String,
    pub ceiling: String,
    /// The ceiling's key in `[ceilings]`.
    pub setting: &'static str,
    /// The ceiling's `sluice run` flag, after `--max-`.
    pub flag: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_guest_messages_are_cut_on_a_char_boundary_saying_so() {
        assert_eq!(cut_message("short".into()), "short");
        let long = "é".repeat(40 << 20);
        let cut = cut_message(long);
        assert!(cut.len() < MAX_GUEST_MESSAGE + 64, "{}", cut.len());
        assert!(
            cut.ends_with(&format!("of {} bytes]", 80 << 20)),
            "{}",
            &cut[cut.len() - 40..]
        );
        assert!(cut.starts_with("éé"));
    }
}
