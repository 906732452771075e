//! CIDs published by the specifications (IPIP-499's profile fixtures, the UnixFS spec's
//! well-known CIDs) for inputs this test can reproduce exactly.
#![allow(missing_docs)]

use estuary_dag::{DirectoryBuilder, Profile, file::import_bytes};

#[test]
fn ipip_499_hello_world() {
    let (v0, _) = import_bytes(b"hello world", Profile::UnixfsV0_2015.options()).unwrap();
    assert_eq!(
        v0.cid.to_string(),
        "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"
    );
    let (v1, _) = import_bytes(b"hello world", Profile::UnixfsV1_2025.options()).unwrap();
    assert_eq!(
        v1.cid.to_string(),
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    );
}

#[test]
fn unixfs_spec_empty_directories() {
    for (profile, cid) in [
        (
            Profile::UnixfsV0_2015,
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn",
        ),
        (
            Profile::UnixfsV1_2025,
            "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354",
        ),
    ] {
        let root = DirectoryBuilder::new(profile.options())
            .finish(&mut |_| {})
            .unwrap();
        assert_eq!(root.cid.to_string(), cid);
    }
}
