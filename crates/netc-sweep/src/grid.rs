//! Sweep grids: `--set name=v1,v2,...` lists and `start:end:step` ranges, their cartesian
//! product with the seeds, and the run folder name of each point.
//!
//! Ranges step in exact decimal arithmetic, so `0:0.1:0.01` gives `0.03`, never
//! `0.030000000000000002`, and numbers are written in their shortest form (`0.10` is `0.1`), so
//! one setting always names the same run folder.

use std::fmt;

/// Why a grid or a seed list is malformed; the message names the flag and the problem.
#[derive(Clone, Debug, PartialEq)]
pub struct GridError(pub String);

impl fmt::Display for GridError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GridError {}

/// More points than this in one range is almost certainly a typo in the step.
const MAX_RANGE: usize = 10_000;

/// One swept parameter and its values, as the `.net` syntax writes them.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub name: String,
    pub values: Vec<String>,
}

/// The parameters to sweep, in the order given, and the seeds every setting runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub axes: Vec<Axis>,
    pub seeds: Vec<u64>,
}

/// One run of a sweep: a value for every parameter, and a seed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Point {
    pub params: Vec<(String, String)>,
    pub seed: u64,
}

impl Point {
    /// The run folder's name, e.g. `negfrac=0.04,seed=1`.
    pub fn name(&self) -> String {
        let mut parts: Vec<String> = self.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("seed={}", self.seed));
        parts.join(",")
    }

    /// The setting without the seed, e.g. `negfrac=0.04`.
    pub fn setting(&self) -> String {
        self.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }
}

impl Grid {
    /// A grid from `--set` assignments (`("negfrac", "0,0.01,0.02")`) and seeds.
    pub fn new(set: &[(String, String)], seeds: Vec<u64>) -> Result<Grid, GridError> {
        let mut axes: Vec<Axis> = Vec::new();
        for (name, text) in set {
            if axes.iter().any(|a| a.name == *name) {
                return Err(GridError(format!(
                    "--set {name}: the parameter is given twice; list all its values in one --set {name}=a,b,c"
                )));
            }
            if name == "seed" {
                return Err(GridError("--set seed: seeds are given with --seeds".into()));
            }
            axes.push(Axis { name: name.clone(), values: parse_values(name, text)? });
        }
        if seeds.is_empty() {
            return Err(GridError("--seeds: no seed given".into()));
        }
        Ok(Grid { axes, seeds })
    }

    /// Every combination, the first parameter varying slowest and the seed fastest.
    pub fn points(&self) -> Vec<Point> {
        let mut settings: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for axis in &self.axes {
            settings = settings
                .into_iter()
                .flat_map(|s| {
                    axis.values.iter().map(move |v| {
                        let mut s = s.clone();
                        s.push((axis.name.clone(), v.clone()));
                        s
                    })
                })
                .collect();
        }
        settings
            .into_iter()
            .flat_map(|params| self.seeds.iter().map(move |&seed| Point { params: params.clone(), seed }))
            .collect()
    }
}

/// The values of `--set name=TEXT`: comma-separated values and `start:end:step` ranges (both
/// ends included when the steps reach them).
pub fn parse_values(name: &str, text: &str) -> Result<Vec<String>, GridError> {
    let fail = |message: String| GridError(format!("--set {name}={text}: {message}"));
    let mut values: Vec<String> = Vec::new();
    for item in split_top_level(text) {
        let item = item.trim();
        if item.is_empty() {
            return Err(fail("an empty value; write values separated by commas, e.g. 0,0.01,0.02".into()));
        }
        let expanded = if has_top_level(item, ':') { range(item).map_err(fail)? } else { vec![canonical(item)] };
        for value in expanded {
            if value.contains(['/', '\\']) {
                return Err(fail(format!("`{value}` cannot be part of a run folder's name")));
            }
            if values.contains(&value) {
                return Err(fail(format!("{value} is given twice")));
            }
            values.push(value);
        }
    }
    Ok(values)
}

/// Seeds: `0,1,2` or a range such as `0:4:1`.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, GridError> {
    parse_values("seed", text)
        .map_err(|e| GridError(e.0.replacen("--set seed=", "--seeds ", 1)))?
        .iter()
        .map(|v| v.parse::<u64>().map_err(|_| GridError(format!("--seeds {text}: `{v}` is not a whole number ≥ 0"))))
        .collect()
}

/// Splits at commas outside brackets and strings, so list values (`[1, 2]`) stay whole.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut quoted, mut start) = (Vec::new(), 0i32, false, 0);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn has_top_level(text: &str, wanted: char) -> bool {
    !text.starts_with(['[', '"']) && text.contains(wanted)
}

/// The values of `start:end:step`.
fn range(item: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = item.split(':').map(str::trim).collect();
    let [start, end, step] = parts[..] else {
        return Err(format!("`{item}` is not a range; write START:END:STEP, e.g. 0:0.1:0.01"));
    };
    let number =
        |text: &str| Decimal::parse(text).ok_or_else(|| format!("`{text}` in the range `{item}` is not a number"));
    let (start, end, step) = (number(start)?, number(end)?, number(step)?);
    let scale = start.scale.max(end.scale).max(step.scale);
    let (a, b, s) = (start.units_at(scale), end.units_at(scale), step.units_at(scale));
    let (Some(a), Some(b), Some(s)) = (a, b, s) else {
        return Err(format!("the range `{item}` has too many digits"));
    };
    if s <= 0 {
        return Err(format!("the step of the range `{item}` must be greater than 0"));
    }
    if a > b {
        return Err(format!("the range `{item}` is reversed: its start is greater than its end"));
    }
    let count = (b - a) / s + 1;
    if count > MAX_RANGE as i128 {
        return Err(format!("the range `{item}` has {count} values, more than {MAX_RANGE}"));
    }
    Ok((0..count).map(|i| Decimal { units: a + i * s, scale }.to_string()).collect())
}

/// A number in its shortest decimal form; anything else (a word, a list) unchanged.
fn canonical(value: &str) -> String {
    Decimal::parse(value).map_or_else(|| value.to_string(), |d| d.to_string())
}

/// An exact decimal: `units / 10^scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Decimal {
    units: i128,
    scale: u32,
}

/// More fractional digits than any sweep needs; keeps `units` far from overflow.
const MAX_SCALE: u32 = 18;

impl Decimal {
    /// `-12`, `0.04`, `1e-3`, `2.5E+2`.
    fn parse(text: &str) -> Option<Decimal> {
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
            None => (text, 0),
        };
        let (negative, digits) = match mantissa.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !all_digits(whole)
            || !all_digits(fraction)
            || (digits.contains('.') && fraction.is_empty())
        {
            return None;
        }
        let mut units: i128 = format!("{whole}{fraction}").parse().ok()?;
        let mut scale = fraction.len() as i64 - i64::from(exponent);
        while scale < 0 {
            units = units.checked_mul(10)?;
            scale += 1;
        }
        if scale > i64::from(MAX_SCALE) || units > 10i128.pow(30) {
            return None;
        }
        Some(Decimal { units: if negative { -units } else { units }, scale: scale as u32 })
    }

    fn units_at(self, scale: u32) -> Option<i128> {
        self.units.checked_mul(10i128.checked_pow(scale - self.scale)?)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let power = 10i128.pow(self.scale);
        let (whole, fraction) = (self.units.abs() / power, self.units.abs() % power);
        let sign = if self.units < 0 { "-" } else { "" };
        if fraction == 0 {
            return write!(f, "{sign}{whole}");
        }
        let digits = format!("{fraction:0width$}", width = self.scale as usize);
        write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// Which of a sweep's runs one process trains, for launchers that start K copies of the same
/// command (a Slurm job array): shard `index` of `count` (from 0) takes the grid's points
/// `index, index + count, index + 2·count, …` in grid order, so the shards of any K cover the
/// grid exactly once between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Every point: one process runs the whole sweep.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// `--shard i/K`, with `i` counted from 1 as job arrays and MPI launchers number tasks
    /// (`SLURM_ARRAY_TASK_ID` from 1 to K).
    pub fn parse(text: &str) -> Result<Shard, GridError> {
        let bad = |why: &str| GridError(format!("--shard {text}: {why} (expected i/K with 1 ≤ i ≤ K, e.g. 2/4)"));
        let (i, k) = text.split_once('/').ok_or_else(|| bad("no `/`"))?;
        let (i, k): (usize, usize) = match (i.trim().parse(), k.trim().parse()) {
            (Ok(i), Ok(k)) => (i, k),
            _ => return Err(bad("not two whole numbers")),
        };
        if k == 0 || i == 0 || i > k {
            return Err(bad("out of range"));
        }
        Ok(Shard { index: i - 1, count: k })
    }

    /// Whether the point at `position` in grid order is this shard's.
    pub fn takes(self, position: usize) -> bool {
        position % self.count == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<String> {
        parse_values("negfrac", text).unwrap()
    }

    fn error(text: &str) -> String {
        parse_values("negfrac", text).unwrap_err().0
    }

    #[test]
    fn ranges_step_exactly() {
        let expected: Vec<String> =
            ["0", "0.01", "0.02", "0.03", "0.04", "0.05", "0.06", "0.07", "0.08", "0.09", "0.1"]
                .map(String::from)
                .to_vec();
        assert_eq!(values("0:0.10:0.01"), expected);
        assert_eq!(values("0,0.01,0.02,0.03,0.04,0.05,0.06,0.07,0.08,0.09,0.10"), expected);
        assert_eq!(values("0.1:0.3:0.1"), ["0.1", "0.2", "0.3"]);
        assert_eq!(values("0:1:0.3"), ["0", "0.3", "0.6", "0.9"]);
        assert_eq!(values("1e-3:3e-3:1e-3"), ["0.001", "0.002", "0.003"]);
        assert_eq!(values("-1:1:1"), ["-1", "0", "1"]);
        assert_eq!(values("0.5:0.5:1"), ["0.5"]);
    }

    #[test]
    fn lists_mix_values_ranges_and_words() {
        assert_eq!(values("0, 0.10 ,0.2:0.4:0.1"), ["0", "0.1", "0.2", "0.3", "0.4"]);
        assert_eq!(parse_values("mask", "fixed,resample").unwrap(), ["fixed", "resample"]);
        assert_eq!(parse_values("shape", "[1, 2],[3, 4]").unwrap(), ["[1, 2]", "[3, 4]"]);
        assert_eq!(values("1.50"), ["1.5"]);
        assert_eq!(values("-0.0"), ["0"]);
    }

    #[test]
    fn malformed_grids_name_the_problem() {
        assert!(
            error("0:0.1:0").contains("the step of the range `0:0.1:0` must be greater than 0"),
            "{}",
            error("0:0.1:0")
        );
        assert!(error("0:0.1:-0.01").contains("must be greater than 0"));
        assert!(error("0:0.1").contains("`0:0.1` is not a range; write START:END:STEP"));
        assert!(error("0.1:0:0.01").contains("the range `0.1:0:0.01` is reversed"));
        assert!(error("a:b:0.1").contains("`a` in the range `a:b:0.1` is not a number"));
        assert!(error("0:1:0.00001").contains("has 100001 values"));
        assert!(error("0,,1").contains("an empty value"));
        assert!(error("0.1,0.10").contains("0.1 is given twice"));
        assert!(error("0:0.1:0.05,0.1").contains("0.1 is given twice"));
        assert!(error("\"a/b\"").contains("cannot be part of a run folder's name"));
        assert!(error("0:0.1:0").starts_with("--set negfrac=0:0.1:0: "));
    }

    #[test]
    fn a_parameter_given_twice_is_an_error() {
        let set = [("negfrac".to_string(), "0".to_string()), ("negfrac".to_string(), "0.1".to_string())];
        let e = Grid::new(&set, vec![0]).unwrap_err().0;
        assert!(e.contains("--set negfrac: the parameter is given twice"), "{e}");
        assert!(Grid::new(&[], vec![]).unwrap_err().0.contains("no seed"));
    }

    #[test]
    fn seeds() {
        assert_eq!(parse_seeds("0,1,2").unwrap(), [0, 1, 2]);
        assert_eq!(parse_seeds("3:5:1").unwrap(), [3, 4, 5]);
        assert!(parse_seeds("0.5").unwrap_err().0.contains("`0.5` is not a whole number"));
        assert!(parse_seeds("-1").unwrap_err().0.contains("`-1` is not a whole number"));
        assert!(parse_seeds("2:0:1").unwrap_err().0.starts_with("--seeds 2:0:1: the range"));
    }

    #[test]
    fn points_are_the_cartesian_product_seed_fastest() {
        let set = [("negfrac".to_string(), "0,0.5".to_string()), ("mask".to_string(), "fixed,resample".to_string())];
        let grid = Grid::new(&set, vec![0, 1]).unwrap();
        let names: Vec<String> = grid.points().iter().map(Point::name).collect();
        assert_eq!(names.len(), 8);
        assert_eq!(names[0], "negfrac=0,mask=fixed,seed=0");
        assert_eq!(names[1], "negfrac=0,mask=fixed,seed=1");
        assert_eq!(names[2], "negfrac=0,mask=resample,seed=0");
        assert_eq!(names[7], "negfrac=0.5,mask=resample,seed=1");
        assert_eq!(grid.points()[7].setting(), "negfrac=0.5,mask=resample");
        assert_eq!(Grid::new(&[], vec![4]).unwrap().points()[0].name(), "seed=4");
    }

    #[test]
    fn shards_interleave_the_grid_and_cover_it_once() {
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(Shard::parse("1/1"), Ok(Shard::ALL));
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        for count in 1..=5 {
            let taken: Vec<usize> =
                (0..17).map(|p| (0..count).filter(|&index| Shard { index, count }.takes(p)).count()).collect();
            assert!(taken.iter().all(|&n| n == 1), "K = {count}: {taken:?}");
        }
        let second: Vec<usize> = (0..7).filter(|&p| Shard { index: 1, count: 3 }.takes(p)).collect();
        assert_eq!(second, [1, 4]);
    }
}
