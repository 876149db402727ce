//! Typed errors of the sandbox: what failed, for which tenant and function,
//! and whether the module (rejected) or one call (trap, limit) is at fault.

use std::time::Duration;

/// Result of sandbox operations.
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

/// Why a component was refused at load time. The running version of a
/// tenant (if any) is unaffected by a rejection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("not a WebAssembly binary (no `\\0asm` header)")]
    NotWasm,
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
    #[error("does not target the sluice world `sluice:analytics/tenant@0.3.0`: {0}")]
    WrongWorld(String),
    #[error("`describe` failed: {0}")]
    Describe(String),
}

/// Which per-call bound a guest ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// The call ran longer than its CPU budget (epoch deadline).
    Cpu { budget: Duration },
    /// The instance tried to grow its memory past the cap (bytes).
    Memory { cap: u64 },
    /// The call returned more than the output cap (bytes).
    Output { cap: u64, size: u64 },
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Cpu { budget } => write!(f, "CPU budget of {budget:?} per call"),
            Limit::Memory { cap } => write!(f, "memory cap of {cap} bytes"),
            Limit::Output { cap, size } => {
                write!(f, "output cap of {cap} bytes (returned {size} bytes)")
            }
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
    /// The engine itself could not be set up or could not instantiate.
    #[error("sandbox engine: {0}")]
    Engine(String),
}

impl SandboxError {
    /// True when the failing call trapped (a plain trap, or the CPU or
    /// memory limit) and so discarded its instance.
    pub fn is_trap(&self) -> bool {
        matches!(
            self,
            SandboxError::Trap { .. }
                | SandboxError::LimitExceeded {
                    limit: Limit::Cpu { .. } | Limit::Memory { .. },
                    ..
                }
        )
    }

    /// True when the failure is caused by what the call was given (a trap,
    /// a limit, an error value): callers isolate the poison input by
    /// retrying smaller pieces. False for engine and I/O failures.
    pub fn is_caused_by_input(&self) -> bool {
        matches!(
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

/// Renders a wasmtime error with its whole cause chain on one line.
pub(crate) fn chain(err: &wasmtime::Error) -> String {
    let mut out = String::new();
    for (i, cause) in err.chain().enumerate() {
        if i > 0 {
            out.push_str(": ");
        }
        out.push_str(&cause.to_string());
    }
    out
}
