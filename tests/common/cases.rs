//! The cases of the GPU-versus-CPU kernel sweep: each one op on seeded random inputs, on shapes
//! chosen to be awkward (1x1 maps, odd sizes, channels off the tile, groups > 1, stride 2).

#![allow(dead_code)]

/// One op applied to seeded random inputs.
#[derive(Clone, Debug)]
pub enum Case {
    Conv {
        n: usize,
        h: usize,
        w: usize,
        cin: usize,
        cout: usize,
        ksize: usize,
        stride: usize,
    },
    /// A convolution plus a 1x1 convolution of another input (`conv2d_skip`); with `split` > 0
    /// that input is a pair of tensors with `split` and `cin2 - split` channels.
    ConvSkip {
        n: usize,
        h: usize,
        w: usize,
        cin: usize,
        cin2: usize,
        cout: usize,
        split: usize,
    },
    /// A 3x3 convolution of the 2x nearest upsampling (`upsample_conv2d`).
    UpsampleConv {
        n: usize,
        h: usize,
        w: usize,
        cin: usize,
        cout: usize,
    },
    /// A convolution with a residual add fused in (`conv2d_add`).
    ConvAdd {
        n: usize,
        h: usize,
        w: usize,
        cin: usize,
        cout: usize,
        ksize: usize,
    },
    Linear {
        rows: usize,
        k: usize,
        n: usize,
        bias: bool,
    },
    /// `linear_fused`: an added tensor and/or SiLU after the product.
    LinearFused {
        rows: usize,
        k: usize,
        n: usize,
        add: bool,
        silu: bool,
    },
    /// Batched product of transposed views, as attention uses.
    MatmulStrided {
        batch: usize,
        m: usize,
        n: usize,
        k: usize,
    },
    /// With `split` > 0 the input is a pair of tensors with `split` and `c - split` channels.
    GroupNorm {
        n: usize,
        h: usize,
        w: usize,
        c: usize,
        groups: usize,
        silu: bool,
        add: bool,
        split: usize,
    },
    Silu {
        len: usize,
    },
    Axpby {
        len: usize,
        a: f32,
        b: f32,
    },
    Upsample {
        n: usize,
        h: usize,
        w: usize,
        c: usize,
    },
    Concat {
        n: usize,
        h: usize,
        w: usize,
        ca: usize,
        cb: usize,
    },
    Softmax {
        rows: usize,
        len: usize,
        spread: f32,
    },
    Embedding {
        n: usize,
        rows: usize,
        dim: usize,
    },
    Timestep {
        n: usize,
        dim: usize,
        scale: f32,
    },
    Attention {
        n: usize,
        h: usize,
        w: usize,
        c: usize,
    },
    Randn {
        n: usize,
        per: usize,
        seed: u32,
        stream: u32,
    },
    Combine3 {
        len: usize,
        with_z: bool,
    },
    RowDot {
        n: usize,
        per: usize,
    },
    ErrorRatio {
        len: usize,
    },
    Blend {
        n: usize,
        per: usize,
    },
    /// `op` 0..4: SiLU gradient, SiLU second-order term, Adam's second moment, Adam's update.
    Pointwise {
        len: usize,
        op: usize,
    },
}

/// The sweep: every op, with the awkward shapes (1x1 maps, odd sizes, channels off the tile, groups,
/// stride 2, batch > 1).
pub fn sweep() -> Vec<Case> {
    use Case::*;
    vec![
        LinearFused {
            rows: 3,
            k: 7,
            n: 5,
            add: true,
            silu: false,
        },
        LinearFused {
            rows: 2,
            k: 16,
            n: 9,
            add: false,
            silu: true,
        },
        LinearFused {
            rows: 5,
            k: 8,
            n: 12,
            add: true,
            silu: true,
        },
        ConvSkip {
            n: 2,
            h: 3,
            w: 5,
            cin: 3,
            cin2: 7,
            cout: 5,
            split: 0,
        },
        ConvSkip {
            n: 1,
            h: 4,
            w: 3,
            cin: 8,
            cin2: 12,
            cout: 8,
            split: 0,
        },
        // The upsampling path's [h, skip] read in place: odd splits (scalar entry), and splits
        // in multiples of 4 (vec4 entry) with more than one workgroup of pixels and channels.
        ConvSkip {
            n: 2,
            h: 3,
            w: 5,
            cin: 3,
            cin2: 7,
            cout: 5,
            split: 2,
        },
        ConvSkip {
            n: 2,
            h: 4,
            w: 5,
            cin: 8,
            cin2: 48,
            cout: 36,
            split: 32,
        },
        UpsampleConv {
            n: 2,
            h: 3,
            w: 5,
            cin: 3,
            cout: 5,
        },
        UpsampleConv {
            n: 1,
            h: 4,
            w: 4,
            cin: 8,
            cout: 4,
        },
        // More than one GPU workgroup of pixels per phase and of output channels; output
        // widths the fast CPU kernel runs (16 and 32 lanes).
        UpsampleConv {
            n: 2,
            h: 5,
            w: 7,
            cin: 12,
            cout: 48,
        },
        UpsampleConv {
            n: 1,
            h: 3,
            w: 4,
            cin: 8,
            cout: 32,
        },
        // Any channel counts, and the vec4 path (multiples of 4).
        ConvAdd {
            n: 2,
            h: 5,
            w: 7,
            cin: 3,
            cout: 5,
            ksize: 3,
        },
        ConvAdd {
            n: 3,
            h: 4,
            w: 3,
            cin: 8,
            cout: 12,
            ksize: 3,
        },
        ConvAdd {
            n: 1,
            h: 6,
            w: 5,
            cin: 4,
            cout: 8,
            ksize: 1,
        },
        Conv {
            n: 1,
            h: 1,
            w: 1,
            cin: 3,
            cout: 5,
            ksize: 3,
            stride: 1,
        },
        Conv {
            n: 2,
            h: 5,
            w: 7,
            cin: 3,
            cout: 6,
            ksize: 3,
            stride: 1,
        },
        Conv {
            n: 1,
            h: 8,
            w: 8,
            cin: 4,
            cout: 32,
            ksize: 3,
            stride: 2,
        },
        // Output channels a multiple of the CPU kernels' 8-wide tiles, rows not a multiple of 4.
        Conv {
            n: 3,
            h: 5,
            w: 7,
            cin: 5,
            cout: 16,
            ksize: 3,
            stride: 1,
        },
        Conv {
            n: 2,
            h: 3,
            w: 6,
            cin: 9,
            cout: 8,
            ksize: 1,
            stride: 1,
        },
        Conv {
            n: 2,
            h: 7,
            w: 5,
            cin: 5,
            cout: 33,
            ksize: 3,
            stride: 2,
        },
        Conv {
            n: 1,
            h: 1,
            w: 1,
            cin: 2,
            cout: 3,
            ksize: 3,
            stride: 2,
        },
        Conv {
            n: 3,
            h: 4,
            w: 3,
            cin: 6,
            cout: 7,
            ksize: 1,
            stride: 1,
        },
        Conv {
            n: 1,
            h: 9,
            w: 9,
            cin: 1,
            cout: 1,
            ksize: 3,
            stride: 1,
        },
        Conv {
            n: 1,
            h: 6,
            w: 6,
            cin: 37,
            cout: 9,
            ksize: 1,
            stride: 2,
        },
        // Channel counts that are multiples of 4 take the vec4 entry point.
        Conv {
            n: 1,
            h: 1,
            w: 1,
            cin: 4,
            cout: 4,
            ksize: 3,
            stride: 1,
        },
        Conv {
            n: 2,
            h: 5,
            w: 7,
            cin: 8,
            cout: 12,
            ksize: 3,
            stride: 1,
        },
        Conv {
            n: 2,
            h: 7,
            w: 5,
            cin: 12,
            cout: 36,
            ksize: 3,
            stride: 2,
        },
        Conv {
            n: 3,
            h: 4,
            w: 3,
            cin: 16,
            cout: 8,
            ksize: 1,
            stride: 1,
        },
        Linear {
            rows: 1,
            k: 1,
            n: 1,
            bias: true,
        },
        Linear {
            rows: 5,
            k: 3,
            n: 7,
            bias: false,
        },
        Linear {
            rows: 33,
            k: 17,
            n: 9,
            bias: true,
        },
        Linear {
            rows: 70,
            k: 64,
            n: 65,
            bias: true,
        },
        MatmulStrided {
            batch: 1,
            m: 1,
            n: 1,
            k: 1,
        },
        MatmulStrided {
            batch: 3,
            m: 9,
            n: 13,
            k: 5,
        },
        MatmulStrided {
            batch: 2,
            m: 37,
            n: 33,
            k: 16,
        },
        GroupNorm {
            n: 1,
            h: 1,
            w: 1,
            c: 4,
            groups: 2,
            silu: false,
            add: false,
            split: 0,
        },
        GroupNorm {
            n: 2,
            h: 3,
            w: 5,
            c: 6,
            groups: 3,
            silu: true,
            add: true,
            split: 0,
        },
        GroupNorm {
            n: 1,
            h: 8,
            w: 8,
            c: 32,
            groups: 8,
            silu: true,
            add: false,
            split: 0,
        },
        GroupNorm {
            n: 3,
            h: 2,
            w: 2,
            c: 7,
            groups: 7,
            silu: false,
            add: true,
            split: 0,
        },
        GroupNorm {
            n: 2,
            h: 1,
            w: 1,
            c: 12,
            groups: 1,
            silu: true,
            add: true,
            split: 0,
        },
        GroupNorm {
            n: 1,
            h: 17,
            w: 19,
            c: 5,
            groups: 1,
            silu: false,
            add: false,
            split: 0,
        },
        // Pairs read in place: a group straddling the two tensors (channels 4..8 of 12 split
        // at 6), and the U-Net's 96 = 64 + 32 in 8 groups.
        GroupNorm {
            n: 2,
            h: 3,
            w: 2,
            c: 12,
            groups: 3,
            silu: true,
            add: true,
            split: 6,
        },
        GroupNorm {
            n: 1,
            h: 4,
            w: 4,
            c: 96,
            groups: 8,
            silu: false,
            add: false,
            split: 64,
        },
        // A group wider than the GPU kernel's 64 invocations (its walk carries the channel).
        GroupNorm {
            n: 2,
            h: 3,
            w: 2,
            c: 260,
            groups: 2,
            silu: true,
            add: true,
            split: 0,
        },
        Silu { len: 1 },
        Silu { len: 1000 },
        Axpby {
            len: 1,
            a: 1.0,
            b: 1.0,
        },
        Axpby {
            len: 777,
            a: 0.3,
            b: -2.5,
        },
        Upsample {
            n: 1,
            h: 1,
            w: 1,
            c: 1,
        },
        Upsample {
            n: 2,
            h: 3,
            w: 5,
            c: 7,
        },
        Concat {
            n: 1,
            h: 1,
            w: 1,
            ca: 1,
            cb: 3,
        },
        Concat {
            n: 2,
            h: 3,
            w: 5,
            ca: 7,
            cb: 2,
        },
        Softmax {
            rows: 1,
            len: 1,
            spread: 1.0,
        },
        Softmax {
            rows: 5,
            len: 257,
            spread: 4.0,
        },
        Softmax {
            rows: 3,
            len: 16,
            spread: 80.0,
        },
        Embedding {
            n: 1,
            rows: 1,
            dim: 1,
        },
        Embedding {
            n: 7,
            rows: 11,
            dim: 13,
        },
        Timestep {
            n: 1,
            dim: 2,
            scale: 1.0,
        },
        Timestep {
            n: 6,
            dim: 64,
            scale: 1000.0,
        },
        Attention {
            n: 1,
            h: 1,
            w: 1,
            c: 4,
        },
        Attention {
            n: 2,
            h: 3,
            w: 3,
            c: 5,
        },
        Attention {
            n: 1,
            h: 4,
            w: 4,
            c: 8,
        },
        // More tokens than the fused GPU kernel's 64 invocations, and the digits model's 8x8.
        Attention {
            n: 2,
            h: 9,
            w: 9,
            c: 12,
        },
        Attention {
            n: 2,
            h: 8,
            w: 8,
            c: 16,
        },
        Randn {
            n: 1,
            per: 1,
            seed: 0,
            stream: 0,
        },
        Randn {
            n: 3,
            per: 1000,
            seed: 4_000_000_000,
            stream: 7,
        },
        Combine3 {
            len: 1,
            with_z: true,
        },
        Combine3 {
            len: 513,
            with_z: false,
        },
        Combine3 {
            len: 513,
            with_z: true,
        },
        RowDot { n: 1, per: 1 },
        RowDot { n: 3, per: 3072 },
        RowDot { n: 5, per: 255 },
        ErrorRatio { len: 300 },
        Blend { n: 1, per: 1 },
        Blend { n: 3, per: 75 },
        Pointwise { len: 1, op: 0 },
        Pointwise { len: 1000, op: 0 },
        Pointwise { len: 1000, op: 1 },
        Pointwise { len: 333, op: 2 },
        Pointwise { len: 333, op: 3 },
    ]
}

/// The sweep's cases that have variants by adapter class (convolutions, attention).
pub fn variant_cases() -> Vec<Case> {
    sweep()
        .into_iter()
        .filter(|c| {
            matches!(
                c,
                Case::Attention { .. }
                    | Case::Conv { .. }
                    | Case::ConvAdd { .. }
                    | Case::ConvSkip { .. }
                    | Case::UpsampleConv { .. }
            )
        })
        .collect()
}
