//! The 2-D score MLP of `train/nets.py` (ScoreMLP, no classes) as trainable parameters, with a
//! forward pass that carries an optional tangent (the Jacobian-vector product `d eps / dx . v` that
//! sliced score matching needs) and the explicit backward pass through both.
//!
//! Parameters are kept in the runtime layout (`[in, out]` matrices); names and export layout are
//! PyTorch's, so an exported file loads like a shipped one.

use crate::backend::Backend;
use crate::error::Result;
use crate::ops::{Matmul, Pointwise, View};
use crate::rng::Rng;

/// One linear layer's parameters: indices into [`ScoreMlp::params`].
#[derive(Clone, Copy, Debug)]
pub struct Lin {
    pub w: usize,
    pub b: usize,
    pub cin: usize,
    pub cout: usize,
}

/// A named parameter (PyTorch name; `[in, out]` for a matrix, whose file shape is `[out, in]`).
pub struct Param<B: Backend> {
    pub name: String,
    pub value: B::Tensor,
}

pub struct ScoreMlp<B: Backend> {
    pub params: Vec<Param<B>>,
    pub time_base: usize,
    pub time_scale: f32,
    embed_fc1: Lin,
    embed_fc2: Lin,
    in_proj: Lin,
    blocks: Vec<[Lin; 3]>, // fc1, temb, fc2
    out_proj: Lin,
}

/// What the forward pass keeps for the backward pass (`dot`: the tangent of each activation).
struct Tape<B: Backend> {
    /// `[1, n]` of ones: the bias gradients are its product with the output gradients.
    ones: B::Tensor,
    x: B::Tensor,
    xdot: Option<B::Tensor>,
    sinus: B::Tensor,
    e1: B::Tensor,
    se1: B::Tensor,
    e2: B::Tensor,
    temb: B::Tensor,
    /// Per block: the hidden state h entering it (and its tangent), silu(h), z = fc1 + temb, silu(z).
    blocks: Vec<BlockTape<B>>,
    h: B::Tensor,
    hdot: Option<B::Tensor>,
    a: B::Tensor,
    adot: Option<B::Tensor>,
}

struct BlockTape<B: Backend> {
    h: B::Tensor,
    hdot: Option<B::Tensor>,
    a: B::Tensor,
    adot: Option<B::Tensor>,
    z: B::Tensor,
    zdot: Option<B::Tensor>,
    u: B::Tensor,
    udot: Option<B::Tensor>,
}

/// The network's output and what its backward pass needs.
pub struct Forward<B: Backend> {
    pub eps: B::Tensor,
    /// `d eps / dx . xdot`, when a tangent was given.
    pub eps_dot: Option<B::Tensor>,
    tape: Tape<B>,
}

impl<B: Backend> ScoreMlp<B> {
    /// PyTorch's default initialisation of `nn.Linear`: weights and biases uniform in
    /// `+-1/sqrt(in)`, drawn from `rng` in parameter order.
    pub fn init(
        be: &mut B,
        rng: &mut Rng,
        dim: usize,
        width: usize,
        depth: usize,
        time_base: usize,
        time_scale: f32,
    ) -> Result<Self> {
        let mut layers: Vec<(String, usize, usize)> = vec![
            ("embed.fc1".into(), time_base, width),
            ("embed.fc2".into(), width, width),
            ("in_proj".into(), dim, width),
        ];
        for i in 0..depth {
            for part in ["fc1", "temb", "fc2"] {
                layers.push((format!("blocks.{i}.{part}"), width, width));
            }
        }
        layers.push(("out_proj".into(), width, dim));
        let mut values = Vec::new();
        for (name, cin, cout) in &layers {
            let bound = 1.0 / (*cin as f32).sqrt();
            values.push((
                format!("{name}.weight"),
                vec![*cin, *cout],
                rng.uniforms(cin * cout, -bound, bound),
            ));
            values.push((
                format!("{name}.bias"),
                vec![*cout],
                rng.uniforms(*cout, -bound, bound),
            ));
        }
        Self::from_values(be, &values, dim, width, depth, time_base, time_scale)
    }

    /// Builds the network from `(name, runtime shape, values)` in [`ScoreMlp::init`]'s order.
    pub fn from_values(
        be: &mut B,
        values: &[(String, Vec<usize>, Vec<f32>)],
        dim: usize,
        width: usize,
        depth: usize,
        time_base: usize,
        time_scale: f32,
    ) -> Result<Self> {
        let params = values
            .iter()
            .map(|(name, shape, v)| {
                Ok(Param {
                    name: name.clone(),
                    value: be.upload(v, shape)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut next = 0;
        let mut lin = |cin, cout| {
            next += 2;
            Lin {
                w: next - 2,
                b: next - 1,
                cin,
                cout,
            }
        };
        let embed_fc1 = lin(time_base, width);
        let embed_fc2 = lin(width, width);
        let in_proj = lin(dim, width);
        let blocks = (0..depth)
            .map(|_| [lin(width, width), lin(width, width), lin(width, width)])
            .collect();
        let out_proj = lin(width, dim);
        Ok(ScoreMlp {
            params,
            time_base,
            time_scale,
            embed_fc1,
            embed_fc2,
            in_proj,
            blocks,
            out_proj,
        })
    }

    fn linear(&self, be: &mut B, l: Lin, x: &B::Tensor) -> Result<B::Tensor> {
        be.linear(x, &self.params[l.w].value, Some(&self.params[l.b].value))
    }

    /// The tangent of a linear layer: the product without the bias.
    fn linear_dot(
        &self,
        be: &mut B,
        l: Lin,
        xdot: &Option<B::Tensor>,
    ) -> Result<Option<B::Tensor>> {
        xdot.as_ref()
            .map(|d| be.linear(d, &self.params[l.w].value, None))
            .transpose()
    }

    /// `silu(x)` and its tangent `silu'(x) xdot`.
    fn silu(
        be: &mut B,
        x: &B::Tensor,
        xdot: &Option<B::Tensor>,
    ) -> Result<(B::Tensor, Option<B::Tensor>)> {
        let y = be.silu(x)?;
        let ydot = xdot
            .as_ref()
            .map(|d| be.pointwise(Pointwise::SiluGrad, x, d, None))
            .transpose()?;
        Ok((y, ydot))
    }

    /// eps for points `x` `[n, dim]` at times `t` `[n]`, with the tangent along `xdot` if given.
    pub fn forward(
        &self,
        be: &mut B,
        x: &B::Tensor,
        t: &B::Tensor,
        xdot: Option<&B::Tensor>,
    ) -> Result<Forward<B>> {
        let sinus = be.timestep_embedding(t, self.time_base, self.time_scale)?;
        let e1 = self.linear(be, self.embed_fc1, &sinus)?;
        let se1 = be.silu(&e1)?;
        let e2 = self.linear(be, self.embed_fc2, &se1)?;
        let temb = be.silu(&e2)?;
        let xdot = xdot.cloned();
        let mut h = self.linear(be, self.in_proj, x)?;
        let mut hdot = self.linear_dot(be, self.in_proj, &xdot)?;
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for &[fc1, temb_lin, fc2] in &self.blocks {
            let (a, adot) = Self::silu(be, &h, &hdot)?;
            let z1 = self.linear(be, fc1, &a)?;
            let e = self.linear(be, temb_lin, &temb)?;
            let z = be.add(&z1, &e)?;
            let zdot = self.linear_dot(be, fc1, &adot)?;
            let (u, udot) = Self::silu(be, &z, &zdot)?;
            let r = self.linear(be, fc2, &u)?;
            let rdot = self.linear_dot(be, fc2, &udot)?;
            let h_next = be.add(&h, &r)?;
            let hdot_next = match (&hdot, &rdot) {
                (Some(a), Some(b)) => Some(be.add(a, b)?),
                _ => None,
            };
            blocks.push(BlockTape {
                h,
                hdot,
                a,
                adot,
                z,
                zdot,
                u,
                udot,
            });
            h = h_next;
            hdot = hdot_next;
        }
        let (a, adot) = Self::silu(be, &h, &hdot)?;
        let eps = self.linear(be, self.out_proj, &a)?;
        let eps_dot = self.linear_dot(be, self.out_proj, &adot)?;
        Ok(Forward {
            eps,
            eps_dot,
            tape: Tape {
                ones: be.upload(&vec![1.0; B::shape(x)[0]], &[1, B::shape(x)[0]])?,
                x: x.clone(),
                xdot,
                sinus,
                e1,
                se1,
                e2,
                temb,
                blocks,
                h,
                hdot,
                a,
                adot,
            },
        })
    }

    /// Gradients of a loss with respect to every parameter (in [`ScoreMlp::params`] order), given
    /// its gradients `g` with respect to eps and `gdot` with respect to eps's tangent.
    pub fn backward(
        &self,
        be: &mut B,
        fwd: &Forward<B>,
        g: &B::Tensor,
        gdot: Option<&B::Tensor>,
    ) -> Result<Vec<B::Tensor>> {
        let tape = &fwd.tape;
        let mut grads: Vec<Option<B::Tensor>> = vec![None; self.params.len()];
        let gdot = gdot.cloned();
        let (mut gh, mut ghdot) = {
            let (ga, gadot) = self.linear_back(
                be,
                self.out_proj,
                &tape.a,
                &tape.adot,
                g,
                &gdot,
                &tape.ones,
                &mut grads,
            )?;
            Self::silu_back(be, &tape.h, &tape.hdot, &ga, &gadot)?
        };
        let mut gtemb: Option<B::Tensor> = None;
        for (&[fc1, temb_lin, fc2], bt) in self.blocks.iter().zip(&tape.blocks).rev() {
            // h_out = h + fc2(silu(fc1(silu(h)) + temb_lin(temb))): the residual passes gh on.
            let (gu, gudot) = self.linear_back(
                be, fc2, &bt.u, &bt.udot, &gh, &ghdot, &tape.ones, &mut grads,
            )?;
            let (gz, gzdot) = Self::silu_back(be, &bt.z, &bt.zdot, &gu, &gudot)?;
            let (ge, _) = self.linear_back(
                be, temb_lin, &tape.temb, &None, &gz, &None, &tape.ones, &mut grads,
            )?;
            gtemb = Some(match gtemb {
                None => ge,
                Some(acc) => be.add(&acc, &ge)?,
            });
            let (ga, gadot) = self.linear_back(
                be, fc1, &bt.a, &bt.adot, &gz, &gzdot, &tape.ones, &mut grads,
            )?;
            let (gh_in, ghdot_in) = Self::silu_back(be, &bt.h, &bt.hdot, &ga, &gadot)?;
            gh = be.add(&gh, &gh_in)?;
            ghdot = match (ghdot, ghdot_in) {
                (Some(a), Some(b)) => Some(be.add(&a, &b)?),
                (a, b) => a.or(b),
            };
        }
        self.linear_back(
            be,
            self.in_proj,
            &tape.x,
            &tape.xdot,
            &gh,
            &ghdot,
            &tape.ones,
            &mut grads,
        )?;
        // Every block (there is at least one) passes a gradient to the time embedding.
        let gtemb = gtemb.expect("the network has blocks");
        let ge2 = be.pointwise(Pointwise::SiluGrad, &tape.e2, &gtemb, None)?;
        let (gse1, _) = self.linear_back(
            be,
            self.embed_fc2,
            &tape.se1,
            &None,
            &ge2,
            &None,
            &tape.ones,
            &mut grads,
        )?;
        let ge1 = be.pointwise(Pointwise::SiluGrad, &tape.e1, &gse1, None)?;
        self.linear_back(
            be,
            self.embed_fc1,
            &tape.sinus,
            &None,
            &ge1,
            &None,
            &tape.ones,
            &mut grads,
        )?;
        Ok(grads
            .into_iter()
            .map(|g| g.expect("every parameter is reached"))
            .collect())
    }

    /// Backward through `y = x W + b` and its tangent `ydot = xdot W`: accumulates
    /// `dW += x^T g + xdot^T gdot` and `db += sum_rows(g)`, returns `(g W^T, gdot W^T)`.
    #[allow(clippy::too_many_arguments)]
    fn linear_back(
        &self,
        be: &mut B,
        l: Lin,
        x: &B::Tensor,
        xdot: &Option<B::Tensor>,
        g: &B::Tensor,
        gdot: &Option<B::Tensor>,
        ones: &B::Tensor,
        grads: &mut [Option<B::Tensor>],
    ) -> Result<(B::Tensor, Option<B::Tensor>)> {
        let rows = B::shape(g)[0];
        let (cin, cout) = (l.cin, l.cout);
        // x^T g: A is x read transposed.
        let outer = Matmul {
            batch: 1,
            m: cin,
            n: cout,
            k: rows,
            a: View {
                offset: 0,
                batch_stride: rows * cin,
                row_stride: 1,
                col_stride: cin,
            },
            b: View::row_major(rows, cout),
            scale: 1.0,
        };
        let mut dw = be.matmul(x, g, None, &outer)?;
        if let (Some(xd), Some(gd)) = (xdot, gdot) {
            let more = be.matmul(xd, gd, None, &outer)?;
            dw = be.add(&dw, &more)?;
        }
        let dw = be.reshape(&dw, &[cin, cout])?;
        let db = be.matmul(ones, g, None, &Matmul::plain(1, rows, cout))?;
        let db = be.reshape(&db, &[cout])?;
        for (slot, d) in [(l.w, dw), (l.b, db)] {
            grads[slot] = Some(match grads[slot].take() {
                None => d,
                Some(acc) => be.add(&acc, &d)?,
            });
        }
        // g W^T: B is W read transposed.
        let back = Matmul {
            batch: 1,
            m: rows,
            n: cin,
            k: cout,
            a: View::row_major(rows, cout),
            b: View {
                offset: 0,
                batch_stride: cin * cout,
                row_stride: 1,
                col_stride: cout,
            },
            scale: 1.0,
        };
        let w = &self.params[l.w].value;
        let gx = be.matmul(g, w, None, &back)?;
        let gx = be.reshape(&gx, &[rows, cin])?;
        let gxdot = match gdot {
            Some(gd) => {
                let v = be.matmul(gd, w, None, &back)?;
                Some(be.reshape(&v, &[rows, cin])?)
            }
            None => None,
        };
        Ok((gx, gxdot))
    }

    /// Backward through `y = silu(x)`, `ydot = silu'(x) xdot`:
    /// `gx = silu'(x) g + silu''(x) xdot gdot`, `gxdot = silu'(x) gdot`.
    fn silu_back(
        be: &mut B,
        x: &B::Tensor,
        xdot: &Option<B::Tensor>,
        g: &B::Tensor,
        gdot: &Option<B::Tensor>,
    ) -> Result<(B::Tensor, Option<B::Tensor>)> {
        let gx = be.pointwise(Pointwise::SiluGrad, x, g, None)?;
        match (xdot, gdot) {
            (Some(xd), Some(gd)) => {
                let second = be.pointwise(Pointwise::SiluHess, x, xd, Some(gd))?;
                let gx = be.add(&gx, &second)?;
                let gxdot = be.pointwise(Pointwise::SiluGrad, x, gd, None)?;
                Ok((gx, Some(gxdot)))
            }
            _ => Ok((gx, None)),
        }
    }
}
