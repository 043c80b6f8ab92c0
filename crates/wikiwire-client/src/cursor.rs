//! The persisted cursor: the id of the last event handled, in a small JSON file replaced
//! atomically (write a temporary file, rename it over the old one), so a process killed at any
//! moment leaves either the old cursor or the new one, never a torn file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    cursor: u64,
    source: String,
}

#[derive(Debug)]
pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    pub fn new(path: impl Into<PathBuf>) -> CursorFile {
        CursorFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved cursor, `None` if there is no file yet.
    pub fn load(&self) -> std::io::Result<Option<u64>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                serde_json::from_str::<Saved>(&text).map(|saved| Some(saved.cursor)).map_err(|error| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {error}", self.path.display()),
                    )
                })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Replaces the file. `durable` also waits for the disk (fsync of file and directory).
    pub fn save(&self, cursor: u64, source: &str, durable: bool) -> std::io::Result<()> {
        let temporary = self.path.with_extension("tmp");
        {
            let mut file = std::fs::File::create(&temporary)?;
            let text = serde_json::to_string(&Saved { cursor, source: source.to_owned() })?;
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            if durable {
                file.sync_all()?;
            }
        }
        std::fs::rename(&temporary, &self.path)?;
        let directory = self.path.parent().filter(|directory| !directory.as_os_str().is_empty());
        if let (true, Some(directory)) = (durable, directory) {
            std::fs::File::open(directory)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically() {
        let directory = tempfile::tempdir().unwrap();
        let file = CursorFile::new(directory.path().join("state.json"));
        assert_eq!(file.load().unwrap(), None);
        file.save(41, "irc://h/#c", false).unwrap();
        file.save(42, "irc://h/#c", true).unwrap();
        assert_eq!(file.load().unwrap(), Some(42));
        assert!(!directory.path().join("state.tmp").exists());
        std::fs::write(file.path(), "garbage").unwrap();
        assert_eq!(file.load().unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }
}
