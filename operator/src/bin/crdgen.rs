//! Writes the CRDs generated from the Rust types to `crds/` (or the directory given as the first
//! argument): `cargo run -p cairn-operator --bin crdgen`.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the operator lives in the workspace")
                .join("crds")
        });
    std::fs::create_dir_all(&dir)?;
    for (file, crd) in cairn_operator::crd::all() {
        let path = dir.join(file);
        std::fs::write(&path, cairn_operator::crd::to_yaml(&crd))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
