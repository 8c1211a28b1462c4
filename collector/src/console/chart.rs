//! Server-rendered SVG line charts of a time series: a few hundred bytes
//! of inline SVG, its range in words for screen readers, and the numbers
//! in a table behind a `<details>` (no script).

use super::fmt::{date, esc};
use super::layout::{Ctx, table};

/// Averages `points` (time ms, value) into at most `n` equal time slots
/// over their span, dropping empty slots; sorted by time.
pub fn buckets(points: &[(i64, f64)], n: usize) -> Vec<(i64, f64)> {
    let (Some(t0), Some(t1)) = (
        points.iter().map(|p| p.0).min(),
        points.iter().map(|p| p.0).max(),
    ) else {
        return Vec::new();
    };
    let n = n.max(1);
    let width = ((t1 - t0) / n as i64 + 1).max(1);
    let mut sums = vec![(0i64, 0.0f64, 0usize); n];
    for &(t, v) in points {
        let i = (((t - t0) / width) as usize).min(n - 1);
        sums[i].0 += t - t0;
        sums[i].1 += v;
        sums[i].2 += 1;
    }
    sums.into_iter()
        .filter(|s| s.2 > 0)
        .map(|(dt, v, c)| (t0 + dt / c as i64, v / c as f64))
        .collect()
}

const W: f64 = 400.0;
const H: f64 = 150.0;
const PAD: f64 = 6.0;

/// A line chart of `points` (time ms, value), from zero to the maximum;
/// `fmt` writes a value with its unit. Empty when there are fewer than
/// two points.
pub fn line(
    ctx: &Ctx,
    id: &str,
    title: &str,
    points: &[(i64, f64)],
    fmt: &dyn Fn(f64) -> String,
) -> String {
    if points.len() < 2 {
        return String::new();
    }
    let t0 = points[0].0 as f64;
    let span = (points[points.len() - 1].0 as f64 - t0).max(1.0);
    let max = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let top = if max > 0.0 { max } else { 1.0 };
    let min = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let xy: Vec<String> = points
        .iter()
        .map(|&(t, v)| {
            let x = PAD + (t as f64 - t0) / span * (W - 2.0 * PAD);
            let y = H - PAD - v / top * (H - 2.0 * PAD);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let summary = format!(
        "{title} — {} {} {} {}, {} {} ({} → {})",
        ctx.t("de", "from"),
        fmt(min),
        ctx.t("à", "to"),
        fmt(max),
        ctx.t("moyenne", "mean"),
        fmt(mean),
        date(points[0].0),
        date(points[points.len() - 1].0),
    );
    let rows: String = points
        .iter()
        .map(|&(t, v)| {
            format!(
                "<tr><th scope=\"row\">{}</th><td class=\"n\">{}</td></tr>",
                date(t),
                esc(&fmt(v))
            )
        })
        .collect();
    format!(
        "<figure><svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"{id}c\">\
         <line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#555\"/>\
         <line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{r}\" y2=\"{PAD}\" stroke=\"#ccc\" stroke-dasharray=\"4\"/>\
         <polyline fill=\"none\" stroke=\"#1b5e20\" stroke-width=\"2\" points=\"{p}\"/></svg>\
         <figcaption id=\"{id}c\">{s}</figcaption>\
         <details><summary>{d}</summary>{t}</details></figure>",
        b = H - PAD,
        r = W - PAD,
        p = xy.join(" "),
        s = esc(&summary),
        d = ctx.t("Les valeurs", "The values"),
        t = table(
            &format!("{id}t"),
            title,
            &[
                (ctx.t("Heure", "Time"), false),
                (ctx.t("Valeur", "Value"), true)
            ],
            &rows
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_average_equal_time_slots() {
        let pts: Vec<(i64, f64)> = (0..100).map(|i| (i * 1000, i as f64)).collect();
        let b = buckets(&pts, 10);
        assert_eq!(b.len(), 10);
        assert_eq!(b[0], (4500, 4.5));
        assert_eq!(b[9], (94_500, 94.5));
        assert!(buckets(&[], 10).is_empty());
        assert_eq!(buckets(&[(5, 1.0)], 10), vec![(5, 1.0)]);
        // A gap leaves no empty slot behind.
        assert_eq!(buckets(&[(0, 1.0), (1000, 3.0)], 10).len(), 2);
    }

    #[test]
    fn a_chart_draws_from_zero_to_the_maximum_and_says_so() {
        let ctx = Ctx::new("/", vec![("lang".into(), "en".into())], None);
        let f = |v: f64| format!("{v:.0} W");
        let svg = line(
            &ctx,
            "p",
            "Power",
            &[(0, 10.0), (60_000, 20.0), (120_000, 0.0)],
            &f,
        );
        assert!(
            svg.contains("points=\"6.0,75.0 200.0,6.0 394.0,144.0\""),
            "{svg}"
        );
        assert!(svg.contains("Power — from 0 W to 20 W, mean 10 W"), "{svg}");
        assert_eq!(svg.matches("<tr><th scope=\"row\">").count(), 3);
        assert_eq!(line(&ctx, "p", "Power", &[(0, 1.0)], &f), "");
    }
}
