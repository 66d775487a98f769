//! The vendored zstd (`vendor/zstd`, see Cargo.toml) creates a bulk decompressor's context on
//! first use: one made and never used costs nothing, and one used later, or after a
//! dictionary is set, still decompresses what zstd compressed.

use zstd::bulk::{Compressor, Decompressor};

fn text(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("conversation-{:08} ", i % 977).into_bytes())
        .collect()
}

#[test]
fn a_lazy_decompressor_round_trips_again_and_again() {
    let unused = Decompressor::new().expect("decompressor");
    drop(unused);

    let mut c = Compressor::new(1).expect("compressor");
    let mut d = Decompressor::new().expect("decompressor");
    for n in [0, 1, 1_000, 100_000] {
        let plain = text(n);
        let packed = c.compress(&plain).expect("compress");
        let mut out = Vec::with_capacity(plain.len());
        let len = d
            .decompress_to_buffer(&packed, &mut out)
            .expect("decompress");
        assert_eq!(len, plain.len());
        assert_eq!(out, plain);
        assert_eq!(
            d.decompress(&packed, plain.len()).expect("decompress"),
            plain
        );
    }
}

#[test]
fn a_lazy_decompressor_takes_a_dictionary() {
    let dict = text(2_000);
    let plain = text(5_000);
    let packed = Compressor::with_dictionary(3, &dict)
        .expect("compressor")
        .compress(&plain)
        .expect("compress");

    let mut d = Decompressor::with_dictionary(&dict).expect("decompressor");
    assert_eq!(
        d.decompress(&packed, plain.len()).expect("decompress"),
        plain
    );

    // Set after creation, and an empty one (no dictionary) after that.
    let mut d = Decompressor::new().expect("decompressor");
    d.set_dictionary(&dict).expect("dictionary");
    assert_eq!(
        d.decompress(&packed, plain.len()).expect("decompress"),
        plain
    );
    d.set_dictionary(&[]).expect("no dictionary");
    let plain_packed = Compressor::new(1)
        .expect("c")
        .compress(&plain)
        .expect("compress");
    assert_eq!(
        d.decompress(&plain_packed, plain.len())
            .expect("decompress"),
        plain
    );
    // Without the dictionary, the dictionary's frame fails with an error, not a panic.
    assert!(d.decompress(&packed, plain.len()).is_err());
}
