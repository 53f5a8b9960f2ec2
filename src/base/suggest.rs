//! Did-you-mean: the known names closest to a misspelt one.

/// Up to `n` candidates close to `word`, best first (case-insensitive, duplicates once).
pub fn near_names<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
    n: usize,
) -> Vec<String> {
    let lower = word.to_lowercase();
    // Jaro-Winkler catches dropped letters (`hots`), Damerau-Levenshtein catches swaps in
    // short names (`IED` for `IDE`) that Jaro-Winkler scores too low.
    let max_edits = (word.chars().count() / 3).max(1);
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let c_lower = c.to_lowercase();
            let jw = strsim::jaro_winkler(&lower, &c_lower);
            let close = jw >= 0.8 || strsim::damerau_levenshtein(&lower, &c_lower) <= max_edits;
            close.then_some((jw, c))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(n)
        .map(|(_, c)| c.to_owned())
        .collect()
}

/// The one candidate closest to `word`, if any is close enough to be a likely typo.
pub fn nearest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<String> {
    near_names(word, candidates, 1).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_swaps_and_case_are_caught_far_words_are_not() {
        let keys = ["hosts", "tasks", "vars", "handlers", "serial"];
        assert_eq!(nearest("hots", keys).as_deref(), Some("hosts"));
        assert_eq!(nearest("taks", keys).as_deref(), Some("tasks"));
        assert_eq!(nearest("SERIAL", keys).as_deref(), Some("serial"));
        assert_eq!(nearest("IED", ["IDE", "XYZ"]).as_deref(), Some("IDE"));
        assert_eq!(nearest("completely_else", keys), None);
        assert_eq!(nearest("", keys), None);
        assert_eq!(nearest("x", std::iter::empty()), None);
        assert_eq!(
            near_names("vras", ["vars", "vars", "var"], 3),
            ["vars", "var"]
        );
    }
}
