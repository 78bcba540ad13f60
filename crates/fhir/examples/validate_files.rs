//! Validates FHIR JSON files given on the command line and prints every issue.
//! Usage: `cargo run -p fhir --example validate_files -- FILE...`

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "example run by hand: a failure stops it with its message")]

fn main() {
    let mut failed = 0;
    let files: Vec<String> = std::env::args().skip(1).collect();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable file");
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let issues = fhir::validate(&value);
        if issues.iter().any(fhir::Issue::is_error) {
            failed += 1;
        }
        for issue in issues {
            println!("{file}\t{}\t{}\t{}", issue.code.code(), issue.expression.unwrap_or_default(), issue.diagnostics);
        }
    }
    eprintln!("{} of {} files have errors", failed, files.len());
}
