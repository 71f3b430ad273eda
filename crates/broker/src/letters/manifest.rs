//! The manifest a print (or digital-mail) provider picks a batch up by: NDJSON,
//! one line per letter, written whole or not at all (a temporary file renamed
//! into place), after every PDF it names.
//!
//! It holds what a print provider needs to address an envelope, and no national
//! id: a file pairing ids with names and addresses would be the most sensitive
//! artefact of the run, and printing needs none. A digital-mail channel that
//! routes by id gets its own feed when one is added (see docs/runbook.md).

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::LettersError;
use crate::population::Resident;

/// One letter in the manifest.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestLine {
    pub letter_id: String,
    /// The PDF's file name, in the same directory.
    pub file: String,
    /// The day whose disclosures it covers (`YYYY-MM-DD`, Oslo).
    pub day: String,
    pub created_at: String,
    pub recipient: Resident,
    /// Disclosure records it covers.
    pub disclosures: usize,
    pub pages: usize,
}

/// Writes `bytes` to `dir/name` durably and atomically: a temporary file,
/// fsync, rename. A crash leaves either the old state or the whole file.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), LettersError> {
    let io = |e: std::io::Error| LettersError::Io(format!("{name}: {e}"));
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name)).map_err(io)?;
    Ok(())
}

/// The manifest's bytes.
pub fn encode(lines: &[ManifestLine]) -> Result<Vec<u8>, LettersError> {
    let mut out = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut out, l)
            .map_err(|e| LettersError::Io(format!("cannot encode the manifest: {e}")))?;
        out.push(b'\n');
    }
    Ok(out)
}
