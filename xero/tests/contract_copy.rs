//! The contract copy in `xero/contract/` must match the shared reference it
//! was copied from, where that reference is present beside the repository.

use std::path::Path;

#[test]
fn the_contract_copy_matches_the_shared_reference() {
    let copy = Path::new(env!("CARGO_MANIFEST_DIR")).join("contract");
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/xero");
    for name in [
        "README.md",
        "xero_accounting.yaml",
        "xero-identity.yaml",
        "xero-webhooks.yaml",
    ] {
        let ours = std::fs::read(copy.join(name))
            .unwrap_or_else(|e| panic!("xero/contract/{name} is missing: {e}"));
        assert!(!ours.is_empty(), "{name} is empty");
        match std::fs::read(shared.join(name)) {
            Ok(theirs) => assert!(
                ours == theirs,
                "xero/contract/{name} differs from shared/reference/xero/{name}; copy it again"
            ),
            Err(e) => eprintln!("shared reference not present ({e}); checked the copy exists only"),
        }
    }
}
