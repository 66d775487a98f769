//! The vendored zstd (`vendor/zstd`, see Cargo.toml) creates a bulk decompressor's context on
//! first use: one made and never used costs nothing, and one used later, or after a
//! dictionary is set, still decompresses what zstd compressed. Its level 1 searches for
//! matches faster than zstd's own and still Huffman-codes literals.

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

/// zstd level 1 as parquet-rs and `sink::keys` get it (`bulk::Compressor`, from the
/// vendored zstd: Cargo.toml): a faster match search, literals still Huffman-coded;
/// other levels as zstd sets them.
#[test]
fn zstd_level_one_searches_fast_and_keeps_huffman_literals() {
    use zstd::zstd_safe::{CCtx, CParameter, ParamSwitch};
    let compress = |params: &[CParameter], data: &[u8]| {
        let mut ctx = CCtx::create();
        for p in params {
            ctx.set_parameter(*p).expect("parameter");
        }
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
        ctx.compress2(&mut out, data).expect("compress");
        out
    };
    let bulk = |level: i32, data: &[u8]| {
        zstd::bulk::Compressor::new(level)
            .and_then(|mut c| c.compress(data))
            .expect("compress")
    };
    // A PLAIN page of 20,000 random ids (36 hex characters and dashes, each after its
    // length), and JSON text that repeats itself.
    let mut ids = Vec::new();
    for i in 0u64..20_000 {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<rustc_hash::FxHasher>::default();
        let (a, b) = (h.hash_one(i), h.hash_one(!i));
        let id = format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        );
        ids.extend_from_slice(&36u32.to_le_bytes());
        ids.extend_from_slice(id.as_bytes());
    }
    let json: Vec<u8> = (0..4000)
        .flat_map(|i| {
            format!(r#"{{"segmentStart":"2026-10-20T08:{:02}:{:02}.{:03}Z","segmentType":"interact","queueId":"q{}"}}"#, i % 60, i % 59, i % 997, i % 13)
                .into_bytes()
        })
        .collect();
    let tuned = [
        CParameter::CompressionLevel(1),
        CParameter::TargetLength(2),
        CParameter::HashLog(12),
        CParameter::LiteralCompressionMode(ParamSwitch::Enable),
    ];
    for data in [&ids, &json] {
        let out = bulk(1, data);
        assert_eq!(out, compress(&tuned, data));
        assert_ne!(out, compress(&tuned[..1], data), "zstd's own level 1");
        assert_eq!(
            &zstd::bulk::decompress(&out, data.len()).expect("decompress"),
            data
        );
        // Other levels, and a compressor moved from level 1 to another, are zstd's own.
        let three = compress(&[CParameter::CompressionLevel(3)], data);
        assert_eq!(bulk(3, data), three);
        let mut moved = zstd::bulk::Compressor::new(1).expect("compressor");
        moved.set_compression_level(3).expect("level");
        assert_eq!(moved.compress(data).expect("compress"), three);
    }
    // Hex is 4 bits a character Huffman-coded; zstd's negative levels (and level 1 with
    // `TargetLength` alone) store it as it is.
    let (n, packed) = (ids.len(), bulk(1, &ids).len());
    assert!(packed * 100 < n * 60, "{packed} of {n} bytes");
    let raw = compress(&tuned[..2], &ids).len();
    assert!(raw * 2 > packed * 3, "{raw} against {packed} bytes");
}
