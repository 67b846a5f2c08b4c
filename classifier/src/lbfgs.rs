//! L-BFGS over a flat `f64` parameter slice, with every vector operation in place.
//!
//! The algorithm is argmin's `LBFGS` as linfa-logistic configures it: the two-loop recursion
//! over a history of `m` curvature pairs, the initial Hessian scaled by `s·y / y·y`, a line
//! search for the strong Wolfe conditions (`c1 = 1e-4`, `c2 = 0.9`, as argmin's More–Thuente),
//! and the same stopping rules (gradient norm below a tolerance, or a cost change below one).
//!
//! Why not argmin itself: its math traits return a new vector from every operation, and its
//! two-loop recomputes each pair's `y·s` on every iteration. At a text model's size (one to
//! three million parameters over 77–151 labels) that algebra, with the allocations, copies and
//! page faults it brings, was 58% of a fit (perf, docs/accuracy.md); the cost-and-gradient
//! sweep that does the real work was 29%. Here the two-loop recursion makes `2m + 2` passes over
//! the parameters (each vector update fused with the next dot product), into buffers allocated
//! once.

use std::collections::VecDeque;

/// Stopping rules and history length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Curvature pairs kept (argmin's and scikit-learn's default is 10).
    pub history: usize,
    /// Iterations at most.
    pub max_iterations: u64,
    /// Converged when the gradient's L2 norm falls below this.
    pub tolerance_grad: f64,
    /// Converged when one iteration changes the cost by less than this.
    pub tolerance_cost: f64,
}

/// Why the minimiser stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum Termination {
    /// The gradient norm or the cost change fell below its tolerance.
    Converged,
    /// `max_iterations` ran out.
    MaxIterations,
    /// The line search found no acceptable step (typically: the cost is flat to rounding).
    LineSearch(String),
    /// The allocator had not the memory for the minimiser's vectors, all taken before the first
    /// evaluation (nothing was run).
    OutOfMemory,
}

impl Termination {
    /// The reason in words (argmin's wording, which model files already carry).
    pub fn text(&self) -> String {
        match self {
            Termination::Converged => "converged".into(),
            Termination::MaxIterations => "Maximum number of iterations reached".into(),
            Termination::LineSearch(why) => format!("Line search terminated with: '{why}'"),
            Termination::OutOfMemory => "out of memory".into(),
        }
    }
}

/// What the minimiser did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The cost at the returned parameters.
    pub cost: f64,
    /// Iterations run.
    pub iterations: u64,
    /// Cost-and-gradient evaluations.
    pub evaluations: u64,
    /// Why it stopped.
    pub termination: Termination,
}

const C1: f64 = 1e-4;
const C2: f64 = 0.9;
const MAX_BRACKET: usize = 40;
const MAX_ZOOM: usize = 40;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four accumulators: the sum is not a serial dependency chain, and the order is fixed.
    let mut acc = [0.0f64; 4];
    let (ca, ta) = a.as_chunks::<4>();
    let (cb, tb) = b.as_chunks::<4>();
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    for (x, y) in ta.iter().zip(tb) {
        s += x * y;
    }
    s
}

/// Minimises `f` from `x`, leaving the best parameters found in `x`. `f` writes the gradient
/// at its first argument into its second and returns the cost. `on_iteration` sees the
/// iteration number (from 1) and the cost after it.
pub fn minimise<F, H>(x: &mut [f64], mut f: F, settings: Settings, mut on_iteration: H) -> Outcome
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
    H: FnMut(u64, f64),
{
    let n = x.len();
    let m = settings.history.max(1);
    // Every vector the minimiser will hold, taken at once and fallibly: a fit that does not fit
    // ends here, as an outcome, not as an abort in its tenth iteration.
    let Some((mut g, mut d, mut x_new, mut g_new, mut spare)) = workspace(n, m) else {
        return Outcome {
            cost: f64::NAN,
            iterations: 0,
            evaluations: 0,
            termination: Termination::OutOfMemory,
        };
    };
    let mut fx = f(x, &mut g);
    let mut evaluations = 1u64;
    let mut iterations = 0u64;
    let outcome = |cost, iterations, evaluations, termination| Outcome {
        cost,
        iterations,
        evaluations,
        termination,
    };
    if !fx.is_finite() {
        return outcome(
            fx,
            0,
            evaluations,
            Termination::LineSearch("the cost at the start is not finite".into()),
        );
    }
    if dot(&g, &g).sqrt() < settings.tolerance_grad {
        return outcome(fx, 0, evaluations, Termination::Converged);
    }
    // Curvature pairs, oldest first, with rho = 1 / y·s; their buffers come from `spare` and go
    // back to it (pairs and spare hold `m` buffer pairs between them).
    let mut pairs: VecDeque<Pair> = VecDeque::with_capacity(m);
    let mut alpha = vec![0.0; m];
    loop {
        if iterations >= settings.max_iterations {
            return outcome(fx, iterations, evaluations, Termination::MaxIterations);
        }
        let mut slope = two_loop(&pairs, &g, &mut d, &mut alpha);
        if slope >= 0.0 || slope.is_nan() {
            // Not a descent direction (rounding in the history): start again from steepest descent.
            spare.extend(pairs.drain(..).map(|p| (p.s, p.y)));
            d.iter_mut().zip(&g).for_each(|(di, gi)| *di = -gi);
            slope = -dot(&g, &g);
        }
        // The first step along the raw gradient is scaled to unit length (the gradient of a
        // summed loss is large); afterwards the quasi-Newton step of 1 is tried first.
        let first = if pairs.is_empty() {
            (1.0 / (-slope).sqrt()).min(1.0)
        } else {
            1.0
        };
        let search = LineSearch {
            x,
            d: &d,
            fx,
            slope,
        };
        let (step, f_step) = match search.run(first, &mut f, &mut x_new, &mut g_new) {
            Ok((step, f_step, evals)) => {
                evaluations += evals;
                (step, f_step)
            }
            Err((why, evals)) => {
                evaluations += evals;
                return outcome(fx, iterations, evaluations, Termination::LineSearch(why));
            }
        };
        // The new curvature pair: s = step·d, y = g_new - g, in one pass with y·s and y·y.
        let (mut s, mut y) = if pairs.len() == m {
            let pair = pairs.pop_front().expect("history is full");
            (pair.s, pair.y)
        } else {
            spare
                .pop()
                .expect("a spare pair while the history is not full")
        };
        let (ys, yy) = new_pair(step, &d, &g_new, &g, &mut s, &mut y);
        if ys > 0.0 && yy > 0.0 {
            pairs.push_back(Pair {
                s,
                y,
                rho: 1.0 / ys,
                yy,
            });
        } else {
            spare.push((s, y));
        }
        x.copy_from_slice(&x_new);
        std::mem::swap(&mut g, &mut g_new);
        let previous = fx;
        fx = f_step;
        iterations += 1;
        on_iteration(iterations, fx);
        if dot(&g, &g).sqrt() < settings.tolerance_grad
            || (previous - fx).abs() < settings.tolerance_cost
        {
            return outcome(fx, iterations, evaluations, Termination::Converged);
        }
    }
}

/// `n` zeros, or `None` where the allocator has not that much left.
pub(crate) fn try_zeros<T: Copy + Default>(n: usize) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.resize(n, T::default());
    Some(v)
}

/// The minimiser's vectors of `n`: the gradient, the direction, the trial point and its
/// gradient, and `m` spare curvature pairs; `None` where the allocator cannot give them all.
#[allow(clippy::type_complexity)]
fn workspace(
    n: usize,
    m: usize,
) -> Option<(
    Vec<f64>,
    Vec<f64>,
    Vec<f64>,
    Vec<f64>,
    Vec<(Vec<f64>, Vec<f64>)>,
)> {
    let (g, d, x_new, g_new) = (try_zeros(n)?, try_zeros(n)?, try_zeros(n)?, try_zeros(n)?);
    let mut spare = Vec::new();
    spare.try_reserve_exact(m).ok()?;
    for _ in 0..m {
        spare.push((try_zeros(n)?, try_zeros(n)?));
    }
    Some((g, d, x_new, g_new, spare))
}

/// A curvature pair: the step `s`, the gradient change `y`, `rho = 1 / y·s` and `y·y`.
struct Pair {
    s: Vec<f64>,
    y: Vec<f64>,
    rho: f64,
    yy: f64,
}

/// `d = -H·g` by the two-loop recursion, with `H` the history's inverse-Hessian estimate scaled
/// by `s·y / y·y` of the newest pair; returns the slope `g·d`. Each vector update is fused with
/// the dot product the next step needs, so the recursion makes `2m + 2` passes, not `4m + 6`.
fn two_loop(pairs: &VecDeque<Pair>, g: &[f64], d: &mut [f64], alpha: &mut [f64]) -> f64 {
    let len = pairs.len();
    let Some(newest) = pairs.back() else {
        d.iter_mut().zip(g).for_each(|(di, gi)| *di = -gi);
        return -dot(g, g);
    };
    let gamma = 1.0 / (newest.rho * newest.yy);
    d.copy_from_slice(g);
    let mut next = dot(&newest.s, d);
    for i in (0..len).rev() {
        alpha[i] = pairs[i].rho * next;
        // d -= alpha_i y_i, then s_{i-1}·d; after the oldest pair, d *= gamma and y_0·d.
        next = if i > 0 {
            update_dot(d, -alpha[i], &pairs[i].y, 1.0, &pairs[i - 1].s)
        } else {
            update_dot(d, -alpha[0], &pairs[0].y, gamma, &pairs[0].y)
        };
    }
    for i in 0..len {
        let beta = pairs[i].rho * next;
        // d += (alpha_i - beta_i) s_i, then y_{i+1}·d; after the newest pair, d = -d and g·d.
        next = if i + 1 < len {
            update_dot(d, alpha[i] - beta, &pairs[i].s, 1.0, &pairs[i + 1].y)
        } else {
            update_dot(d, alpha[i] - beta, &pairs[i].s, -1.0, g)
        };
    }
    next
}

/// `d = scale · (d + a·v)`, then returns `w·d`, in one pass.
fn update_dot(d: &mut [f64], a: f64, v: &[f64], scale: f64, w: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (cd, td) = d.as_chunks_mut::<4>();
    let (cv, tv) = v.as_chunks::<4>();
    let (cw, tw) = w.as_chunks::<4>();
    for ((dc, vc), wc) in cd.iter_mut().zip(cv).zip(cw) {
        for l in 0..4 {
            dc[l] = scale * (dc[l] + a * vc[l]);
            acc[l] += dc[l] * wc[l];
        }
    }
    let mut sum = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    for ((di, vi), wi) in td.iter_mut().zip(tv).zip(tw) {
        *di = scale * (*di + a * vi);
        sum += *di * wi;
    }
    sum
}

/// `s = step·d`, `y = g_new - g`; returns `(y·s, y·y)`, in one pass.
fn new_pair(
    step: f64,
    d: &[f64],
    g_new: &[f64],
    g: &[f64],
    s: &mut [f64],
    y: &mut [f64],
) -> (f64, f64) {
    let (mut ys, mut yy) = ([0.0f64; 4], [0.0f64; 4]);
    let (cs, ts) = s.as_chunks_mut::<4>();
    let (cy, ty) = y.as_chunks_mut::<4>();
    let (cd, td) = d.as_chunks::<4>();
    let (cn, tn) = g_new.as_chunks::<4>();
    let (cg, tg) = g.as_chunks::<4>();
    for ((((sc, yc), dc), nc), gc) in cs.iter_mut().zip(cy.iter_mut()).zip(cd).zip(cn).zip(cg) {
        for l in 0..4 {
            sc[l] = step * dc[l];
            yc[l] = nc[l] - gc[l];
            ys[l] += yc[l] * sc[l];
            yy[l] += yc[l] * yc[l];
        }
    }
    let mut out = (
        (ys[0] + ys[2]) + (ys[1] + ys[3]),
        (yy[0] + yy[2]) + (yy[1] + yy[3]),
    );
    for ((((si, yi), di), ni), gi) in ts.iter_mut().zip(ty.iter_mut()).zip(td).zip(tn).zip(tg) {
        *si = step * di;
        *yi = ni - gi;
        out.0 += *yi * *si;
        out.1 += *yi * *yi;
    }
    out
}

/// A search along `d` from `x` for a step meeting the strong Wolfe conditions (Nocedal &
/// Wright, algorithms 3.5 and 3.6, with cubic interpolation safeguarded to the inner 80% of
/// the bracket).
struct LineSearch<'a> {
    x: &'a [f64],
    d: &'a [f64],
    fx: f64,
    slope: f64,
}

/// A trial: step, cost, directional derivative.
type Point = (f64, f64, f64);

impl LineSearch<'_> {
    /// Evaluates at `step`: fills `x_new`, `g_new`, returns (cost, slope).
    fn eval<F>(&self, step: f64, f: &mut F, x_new: &mut [f64], g_new: &mut [f64]) -> (f64, f64)
    where
        F: FnMut(&[f64], &mut [f64]) -> f64,
    {
        x_new
            .iter_mut()
            .zip(self.x.iter().zip(self.d))
            .for_each(|(xn, (xi, di))| *xn = xi + step * di);
        let cost = f(x_new, g_new);
        (cost, dot(g_new, self.d))
    }

    fn armijo(&self, step: f64, cost: f64) -> bool {
        cost <= self.fx + C1 * step * self.slope
    }

    fn curvature(&self, slope: f64) -> bool {
        slope.abs() <= -C2 * self.slope
    }

    /// Returns (step, cost, evaluations) with `x_new`, `g_new` at that step.
    fn run<F>(
        &self,
        first: f64,
        f: &mut F,
        x_new: &mut [f64],
        g_new: &mut [f64],
    ) -> Result<(f64, f64, u64), (String, u64)>
    where
        F: FnMut(&[f64], &mut [f64]) -> f64,
    {
        let mut evals = 0;
        let mut prev: Point = (0.0, self.fx, self.slope);
        let mut step = first;
        for i in 0..MAX_BRACKET {
            let (cost, slope) = self.eval(step, f, x_new, g_new);
            evals += 1;
            let here = (step, cost, slope);
            if !cost.is_finite() || !self.armijo(step, cost) || (i > 0 && cost >= prev.1) {
                return self.zoom(prev, here, f, x_new, g_new, evals);
            }
            if self.curvature(slope) {
                return Ok((step, cost, evals));
            }
            if slope >= 0.0 {
                return self.zoom(here, prev, f, x_new, g_new, evals);
            }
            prev = here;
            step *= 2.0;
        }
        Err(("no bracket found".into(), evals))
    }

    /// Narrows [lo, hi] (lo meets the sufficient-decrease condition, hi does not or has the
    /// slope's sign changed) to a strong Wolfe point.
    fn zoom<F>(
        &self,
        mut lo: Point,
        mut hi: Point,
        f: &mut F,
        x_new: &mut [f64],
        g_new: &mut [f64],
        mut evals: u64,
    ) -> Result<(f64, f64, u64), (String, u64)>
    where
        F: FnMut(&[f64], &mut [f64]) -> f64,
    {
        for _ in 0..MAX_ZOOM {
            let (a, b) = (lo.0.min(hi.0), lo.0.max(hi.0));
            let width = b - a;
            if width <= 1e-14 * b.max(1.0) {
                break;
            }
            let step = cubic_minimiser(lo, hi)
                .filter(|s| *s >= a + 0.1 * width && *s <= b - 0.1 * width)
                .unwrap_or(0.5 * (lo.0 + hi.0));
            let (cost, slope) = self.eval(step, f, x_new, g_new);
            evals += 1;
            let here = (step, cost, slope);
            if !cost.is_finite() || !self.armijo(step, cost) || cost >= lo.1 {
                hi = here;
            } else {
                if self.curvature(slope) {
                    return Ok((step, cost, evals));
                }
                if slope * (hi.0 - lo.0) >= 0.0 {
                    hi = lo;
                }
                lo = here;
            }
        }
        // No strong Wolfe point in a bracket this narrow: accept the best point with
        // sufficient decrease if there is one (its gradient is needed, so evaluate it again).
        if lo.0 > 0.0 {
            let (cost, _) = self.eval(lo.0, f, x_new, g_new);
            evals += 1;
            if cost.is_finite() && cost < self.fx {
                return Ok((lo.0, cost, evals));
            }
        }
        Err(("no step decreases the cost".into(), evals))
    }
}

/// The minimiser of the cubic through two points with their slopes, if it has one.
fn cubic_minimiser((a0, f0, d0): Point, (a1, f1, d1): Point) -> Option<f64> {
    let e = d0 + d1 - 3.0 * (f0 - f1) / (a0 - a1);
    let disc = e * e - d0 * d1;
    if disc < 0.0 || disc.is_nan() {
        return None;
    }
    let r = (a1 - a0).signum() * disc.sqrt();
    let step = a1 - (a1 - a0) * (d1 + r - e) / (d1 - d0 + 2.0 * r);
    step.is_finite().then_some(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_iterations: u64) -> Settings {
        Settings {
            history: 10,
            max_iterations,
            tolerance_grad: 1e-10,
            tolerance_cost: 0.0,
        }
    }

    /// The extended Rosenbrock function: a curved valley that needs real curvature information.
    fn rosenbrock(x: &[f64], g: &mut [f64]) -> f64 {
        let mut fx = 0.0;
        for i in (0..x.len()).step_by(2) {
            let t1 = 1.0 - x[i];
            let t2 = 10.0 * (x[i + 1] - x[i] * x[i]);
            g[i + 1] = 20.0 * t2;
            g[i] = -2.0 * (x[i] * g[i + 1] + t1);
            fx += t1 * t1 + t2 * t2;
        }
        fx
    }

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let mut x: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 0 { -1.2 } else { 1.0 })
            .collect();
        let mut seen = Vec::new();
        let out = minimise(&mut x, rosenbrock, settings(500), |i, c| seen.push((i, c)));
        assert_eq!(out.termination, Termination::Converged, "{out:?}");
        assert!(out.cost < 1e-16, "{out:?}");
        assert!(x.iter().all(|v| (v - 1.0).abs() < 1e-6));
        // Every accepted step decreases the cost, and the hook saw each iteration once.
        assert_eq!(seen.len() as u64, out.iterations);
        assert!(
            seen.windows(2)
                .all(|w| w[1].1 <= w[0].1 && w[1].0 == w[0].0 + 1)
        );
        assert!(out.evaluations >= out.iterations);
    }

    #[test]
    fn solves_an_ill_conditioned_quadratic() {
        // f = Σ c_i (x_i - i)², with curvatures over three orders of magnitude. (At six, L-BFGS
        // with ten pairs creeps, here as in scipy's L-BFGS-B: both stand near 7 after 1,000
        // iterations.)
        let c: Vec<f64> = (0..50).map(|i| 10f64.powf(i as f64 / 49.0 * 3.0)).collect();
        let f = |x: &[f64], g: &mut [f64]| {
            let mut fx = 0.0;
            for i in 0..x.len() {
                let r = x[i] - i as f64;
                fx += c[i] * r * r;
                g[i] = 2.0 * c[i] * r;
            }
            fx
        };
        let mut x = vec![0.0; 50];
        let out = minimise(&mut x, f, settings(1000), |_, _| {});
        assert_eq!(out.termination, Termination::Converged, "{out:?}");
        for (i, v) in x.iter().enumerate() {
            assert!((v - i as f64).abs() < 1e-6, "x[{i}] = {v}");
        }
    }

    #[test]
    fn reports_the_iteration_limit() {
        let mut x: Vec<f64> = vec![-1.2, 1.0];
        let out = minimise(&mut x, rosenbrock, settings(3), |_, _| {});
        assert_eq!(out.termination, Termination::MaxIterations);
        assert_eq!(out.iterations, 3);
        assert_eq!(
            out.termination.text(),
            "Maximum number of iterations reached"
        );
    }

    #[test]
    fn a_cost_that_never_decreases_ends_in_a_line_search_failure() {
        // The gradient says "downhill", the cost says otherwise: no step can be accepted.
        let mut x = vec![1.0];
        let out = minimise(
            &mut x,
            |_: &[f64], g: &mut [f64]| {
                g[0] = 1.0;
                0.0
            },
            settings(10),
            |_, _| {},
        );
        assert!(
            matches!(out.termination, Termination::LineSearch(_)),
            "{out:?}"
        );
        assert_eq!(x, vec![1.0], "a failed search leaves the parameters alone");
    }

    #[test]
    fn cubic_minimiser_of_a_parabola_is_its_vertex() {
        // f = (a - 2)², slope 2(a - 2): through a = 0 and a = 5.
        let s = cubic_minimiser((0.0, 4.0, -4.0), (5.0, 9.0, 6.0)).unwrap();
        assert!((s - 2.0).abs() < 1e-12, "{s}");
    }
}
