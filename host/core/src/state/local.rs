//! Checkpoints in a local directory (the embedded default): write to a
//! temporary file, fsync, rename to `checkpoint-<id>.bin`, fsync the
//! directory; keep the newest K.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{failpoint, Checkpoint, CheckpointStore, Error, Restored, Result};

/// A directory of checkpoints.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
    keep: usize,
}

impl LocalStore {
    /// Creates `dir` if needed; keeps the newest `keep` (at least 2, so a
    /// corrupt newest one still leaves one to fall back on).
    pub fn open(dir: &Path, keep: usize) -> Result<LocalStore> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(LocalStore {
            dir: dir.to_owned(),
            keep: keep.max(2),
        })
    }

    /// Bytes of checkpoint `id` on disk, if it is there.
    pub fn size_of(&self, id: u64) -> Option<u64> {
        fs::metadata(self.dir.join(Self::name(id)))
            .ok()
            .map(|m| m.len())
    }

    fn name(id: u64) -> String {
        format!("checkpoint-{id:020}.bin")
    }

    /// Complete checkpoint files, newest first.
    fn files(&self) -> Result<Vec<(u64, PathBuf)>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("checkpoint-"))
                .and_then(|n| n.strip_suffix(".bin"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            files.push((id, entry.path()));
        }
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        Ok(files)
    }
}

impl CheckpointStore for LocalStore {
    fn write(&self, checkpoint: &Checkpoint) -> Result<()> {
        let bytes = checkpoint.encode()?;
        let tmp = self.dir.join(format!("{}.tmp", Self::name(checkpoint.id)));
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        failpoint::hit("after-checkpoint-write-before-rename");
        let path = self.dir.join(Self::name(checkpoint.id));
        fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        for (id, old) in self.files()?.into_iter().skip(self.keep) {
            let _ = fs::remove_file(old);
            let _ = fs::remove_file(self.dir.join(format!("{}.acked", Self::name(id))));
        }
        Ok(())
    }

    fn mark_acked(&self, id: u64) -> Result<()> {
        let path = self.dir.join(format!("{}.acked", Self::name(id)));
        File::create(&path)
            .and_then(|f| f.sync_all())
            .map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }

    fn latest(&self) -> Result<Option<Restored>> {
        for (id, path) in self.files()? {
            let name = path.display().to_string();
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(checkpoint = %name, error = %e, "unreadable checkpoint skipped");
                    continue;
                }
            };
            match Checkpoint::decode(&bytes, &name) {
                Ok(checkpoint) => {
                    let acked = self.dir.join(format!("{}.acked", Self::name(id))).exists();
                    return Ok(Some(Restored { checkpoint, acked }));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "corrupt checkpoint skipped; trying the previous one")
                }
            }
        }
        Ok(None)
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CoordinatorState, CounterState, InputPosition};
    use super::*;

    fn checkpoint(id: u64) -> Checkpoint {
        Checkpoint {
            id,
            tenant: "t".into(),
            module_hash: String::new(),
            input: InputPosition::File {
                offset: id * 10,
                line: id,
            },
            output_bytes: None,
            dead_letter_bytes: None,
            coordinator: CoordinatorState {
                wm: 0,
                max_time: None,
                wm_at_last_record: 0,
                keyless: 0,
                keyless_metrics: Vec::new(),
            },
            counters: CounterState::default(),
            shards: Vec::new(),
            guards: Default::default(),
        }
    }

    #[test]
    fn keeps_the_newest_and_falls_back_past_a_corrupt_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path(), 3).expect("open");
        assert_eq!(store.latest().expect("latest"), None);
        store.write(&checkpoint(1)).expect("write");
        assert!(!store.latest().expect("latest").expect("one").acked);
        store.mark_acked(1).expect("mark");
        assert!(store.latest().expect("latest").expect("one").acked);
        for id in 1..=5 {
            store.write(&checkpoint(id)).expect("write");
        }
        assert_eq!(
            store.files().expect("files").len(),
            3,
            "only the newest 3 kept"
        );
        assert_eq!(
            store.latest().expect("latest").map(|c| c.checkpoint.id),
            Some(5)
        );
        // Corrupt the newest: the previous one is used.
        let newest = dir.path().join(LocalStore::name(5));
        let mut bytes = fs::read(&newest).expect("read");
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        fs::write(&newest, bytes).expect("write");
        assert_eq!(
            store.latest().expect("latest").map(|c| c.checkpoint.id),
            Some(4)
        );
        // A leftover temporary file (a crash before the rename) is ignored.
        fs::write(
            dir.path().join(format!("{}.tmp", LocalStore::name(9))),
            b"half",
        )
        .expect("tmp");
        assert_eq!(
            store.latest().expect("latest").map(|c| c.checkpoint.id),
            Some(4)
        );
    }
}
