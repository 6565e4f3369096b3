//! "Did you mean" for misspelled field and kind names.

/// The candidate closest to `input`, if one is close enough to be what was meant:
/// the same letters in another case or with `_`/`-` inserted, or within a small edit
/// distance (one edit for short names, two for longer ones).
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted = normalize(input);
    let limit = if wanted.chars().count() <= 4 { 1 } else { 2 };
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let distance = edit_distance(&wanted, &normalize(candidate));
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

fn normalize(s: &str) -> String {
    s.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

/// Optimal string alignment distance: insertions, deletions, substitutions and
/// transpositions of neighbours each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best =
                (d[(i - 1) * width + j] + 1).min(d[i * width + j - 1] + 1).min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_case_and_spelling_slips() {
        let fields = ["name", "protocol", "port", "targetPort", "nodePort"];
        assert_eq!(closest("nodeport", fields), Some("nodePort"));
        assert_eq!(closest("node_port", fields), Some("nodePort"));
        assert_eq!(closest("targtPort", fields), Some("targetPort"));
        assert_eq!(closest("protcool", fields), Some("protocol"));
        assert_eq!(closest("containers", ["contianers", "volumes"]), Some("contianers"));
        assert_eq!(closest("selector", fields), None);
        assert_eq!(closest("prt", ["port", "name"]), Some("port"));
        assert_eq!(closest("xyz", ["port", "name"]), None);
    }
}
