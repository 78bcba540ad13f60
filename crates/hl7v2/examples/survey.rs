fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut stack = vec![root.clone()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else if p.file_name().unwrap() != "SOURCES.md" && p.file_name().unwrap() != ".gitattributes" { files.push(p) }
        }
    }
    files.sort();
    for p in files {
        let rel = p.strip_prefix(&root).unwrap().display().to_string();
        let bytes = std::fs::read(&p).unwrap();
        let m = hl7v2::Message::parse_bytes(&bytes);
        let line = match &m {
            Ok(m) => {
                let g = hl7v2::group_lenient(m);
                let gs = match g { Ok(g) => format!("{} missing={:?} extras={:?}", g.root.name(), g.missing, g.root.extras().iter().map(|s| s.id()).collect::<Vec<_>>()), Err(e) => format!("{e:?}") };
                format!("OK {:?} | {}", m.warnings(), gs)
            }
            Err(e) => {
                let b = hl7v2::Batch::parse_bytes(&bytes);
                format!("ERR {e:?} | batch: {:?}", b.map(|b| (b.messages().count(), b.warnings().to_vec())))
            }
        };
        println!("{rel}: {line}");
    }
}
