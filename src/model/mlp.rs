//! The residual score MLP for 2-D points (`train/nets.py` ScoreMLP).

use crate::backend::Backend;
use crate::error::Result;

use super::layers::{Linear, TensorSource, TimeClassEmbedding};
use super::unet::tap;
use super::Taps;

struct Block<B: Backend> {
    fc1: Linear<B>,
    temb: Linear<B>,
    fc2: Linear<B>,
}

pub struct Mlp<B: Backend> {
    embed: TimeClassEmbedding<B>,
    in_proj: Linear<B>,
    blocks: Vec<Block<B>>,
    out_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        be: &mut B,
        src: &mut TensorSource,
        dim: usize,
        width: usize,
        depth: usize,
        num_classes: usize,
        time_base: usize,
        time_scale: f32,
    ) -> Result<Self> {
        let embed = TimeClassEmbedding::load(be, src, time_base, width, num_classes, time_scale)?;
        let in_proj = Linear::load(be, src, "in_proj", dim, width)?;
        let blocks = (0..depth)
            .map(|i| {
                Ok(Block {
                    fc1: Linear::load(be, src, &format!("blocks.{i}.fc1"), width, width)?,
                    temb: Linear::load(be, src, &format!("blocks.{i}.temb"), width, width)?,
                    fc2: Linear::load(be, src, &format!("blocks.{i}.fc2"), width, width)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let out_proj = Linear::load(be, src, "out_proj", width, dim)?;
        Ok(Mlp {
            embed,
            in_proj,
            blocks,
            out_proj,
        })
    }

    /// eps for x `[n, dim]`: `h = in_proj(x)`, per block `h += fc2(silu(fc1(silu(h)) + temb(e)))`,
    /// then `out_proj(silu(h))`.
    pub fn forward(
        &self,
        be: &mut B,
        x: &B::Tensor,
        t: &B::Tensor,
        labels: &B::Tensor,
        mut taps: Option<&mut Taps<B>>,
    ) -> Result<B::Tensor> {
        let temb = self.embed.forward(be, t, labels)?;
        let mut h = self.in_proj.forward(be, x)?;
        for b in &self.blocks {
            let a = be.silu(&h)?;
            let a = b.fc1.forward(be, &a)?;
            let e = b.temb.forward(be, &temb)?;
            let a = be.add(&a, &e)?;
            let a = be.silu(&a)?;
            let a = b.fc2.forward(be, &a)?;
            h = be.add(&h, &a)?;
        }
        tap::<B>(&mut taps, "temb", &temb);
        tap::<B>(&mut taps, "hidden", &h);
        let a = be.silu(&h)?;
        self.out_proj.forward(be, &a)
    }
}
