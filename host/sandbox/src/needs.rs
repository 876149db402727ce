//! What one instance of a component takes from the instance pool: core
//! instances, and the linear memories and tables of the core modules it
//! instantiates — counted from the binary at load, before compiling, so a
//! component over the operator's ceilings is refused with the numbers.
//!
//! Why count: the pool reserves its slots when the engine starts. Sized
//! at a fixed 8 core instances per slot, a componentize-py component (38
//! core instances) could never be instantiated, whatever the worker count,
//! and the failure read as a trap. The ceilings are the pool's per-instance
//! limits (wasmtime enforces them again at instantiation), and the pool's
//! totals are the ceilings times its slots.
//!
//! The count flattens nested components, each counted once; a component
//! instantiating a nested one several times is undercounted here, and
//! wasmtime's own per-component check refuses it at instantiation.

use wasmparser::{ComponentAlias, ComponentOuterAliasKind, Encoding, Instance, Parser, Payload};

/// Pool resources one instance of a component takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub core_instances: u32,
    pub memories: u32,
    pub tables: u32,
}

/// A module or component being read, innermost last.
enum Frame {
    /// A core module's defined memories and tables.
    Module { memories: u32, tables: u32 },
    /// A component's core module index space, as (memories, tables).
    Component(Vec<(u32, u32)>),
}

/// Counts what one instance of the component in `bytes` takes; an
/// unreadable binary is the parser's message.
pub fn count(bytes: &[u8]) -> Result<Needs, String> {
    let mut needs = Needs::default();
    let mut stack: Vec<Frame> = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            Payload::Version { encoding, .. } => stack.push(match encoding {
                Encoding::Module => Frame::Module {
                    memories: 0,
                    tables: 0,
                },
                Encoding::Component => Frame::Component(Vec::new()),
            }),
            Payload::MemorySection(section) => {
                if let Some(Frame::Module { memories, .. }) = stack.last_mut() {
                    *memories = memories.saturating_add(section.count());
                }
            }
            Payload::TableSection(section) => {
                if let Some(Frame::Module { tables, .. }) = stack.last_mut() {
                    *tables = tables.saturating_add(section.count());
                }
            }
            Payload::InstanceSection(section) => {
                for instance in section {
                    if let Instance::Instantiate { module_index, .. } =
                        instance.map_err(|e| e.to_string())?
                    {
                        let (m, t) = match stack.last() {
                            Some(Frame::Component(modules)) => modules
                                .get(module_index as usize)
                                .copied()
                                .unwrap_or((0, 0)),
                            _ => (0, 0),
                        };
                        needs.core_instances = needs.core_instances.saturating_add(1);
                        needs.memories = needs.memories.saturating_add(m);
                        needs.tables = needs.tables.saturating_add(t);
                    }
                }
            }
            Payload::ComponentAliasSection(section) => {
                for alias in section {
                    if let ComponentAlias::Outer {
                        kind: ComponentOuterAliasKind::CoreModule,
                        count,
                        index,
                    } = alias.map_err(|e| e.to_string())?
                    {
                        let outer = stack
                            .len()
                            .checked_sub(1 + count as usize)
                            .and_then(|i| match &stack[i] {
                                Frame::Component(modules) => modules.get(index as usize).copied(),
                                Frame::Module { .. } => None,
                            })
                            .unwrap_or((0, 0));
                        if let Some(Frame::Component(modules)) = stack.last_mut() {
                            modules.push(outer);
                        }
                    }
                }
            }
            Payload::End(_) => {
                if let Some(Frame::Module { memories, tables }) = stack.pop() {
                    if let Some(Frame::Component(modules)) = stack.last_mut() {
                        modules.push((memories, tables));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(needs)
}
