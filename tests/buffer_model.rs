//! `LinkBuffer` against a `VecDeque<u8>` model: random sequences of writer and reader
//! operations, with many block boundaries (small direct chunks, small bookings, flushes).

#[path = "model/linkbuffer.rs"]
mod model;

use model::{run, Op};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    let data = proptest::collection::vec(0u8..8, 0..40);
    // Mostly small reads (many per chunk), sometimes long ones (spanning several blocks).
    let n = prop_oneof![4 => 0usize..50, 1 => 0usize..9000];
    prop_oneof![
        data.clone().prop_map(Op::WriteBinary),
        (0usize..9000, any::<u8>()).prop_map(|(len, seed)| Op::WriteLong { len, seed }),
        data.clone().prop_map(Op::WriteDirect),
        any::<u8>().prop_map(Op::WriteByte),
        (0usize..20, any::<u8>(), 0usize..60).prop_map(|(n, byte, keep)| Op::MallocAck {
            n,
            byte,
            keep
        }),
        Just(Op::Flush),
        (
            1usize..700,
            1usize..3,
            proptest::collection::vec(0u8..8, 0..700)
        )
            .prop_map(|(size, blocks, data)| Op::Book { size, blocks, data }),
        n.clone().prop_map(Op::Next),
        n.clone().prop_map(Op::Peek),
        n.clone().prop_map(Op::Skip),
        (0u8..8).prop_map(Op::Until),
        Just(Op::ReadByte),
        n.clone().prop_map(Op::ReadBinary),
        n.clone().prop_map(Op::Slice),
        Just(Op::Release),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn matches_a_vecdeque_model(ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 20 } else { 120 })) {
        run(ops);
    }
}
