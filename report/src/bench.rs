//! What every benchmark shares (the gas benchmark, the engine's and the runner's): each owns one
//! `## ` section of `docs/benchmarks.md` and rewrites only that section, so the gas tables
//! and the other benchmark's figures stay as they were measured.

use std::path::Path;

/// Replaces the section of `path` that starts with the line `heading` (up to the next
/// `## ` heading) by `section`, or appends it.
pub fn write_section(path: &Path, heading: &str, section: &str) -> std::io::Result<()> {
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{}\n", section.trim_end());
    let doc = match doc.find(heading) {
        Some(start) => {
            let end = doc[start + 1..]
                .find("\n## ")
                .map_or(doc.len(), |e| start + e + 2);
            format!(
                "{}{section}{}",
                &doc[..start],
                if end < doc.len() {
                    format!("\n{}", &doc[end..])
                } else {
                    String::new()
                }
            )
        }
        None => format!("{}\n\n{section}", doc.trim_end()),
    };
    std::fs::write(path, doc)
}

/// Writes each section of `doc` (its `# ` head, then every `## ` section) over the section
/// of `path` with the same heading: for a benchmark that owns several sections.
pub fn write_sections(path: &Path, doc: &str) -> std::io::Result<()> {
    let mut rest = doc;
    while !rest.is_empty() {
        let end = rest[1..].find("\n## ").map_or(rest.len(), |e| e + 2);
        let section = &rest[..end];
        let heading = section.lines().next().unwrap_or_default();
        write_section(path, heading, section)?;
        rest = &rest[end..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_section_is_replaced_and_its_neighbours_kept() {
        let path = std::env::temp_dir().join(format!("bench-section-{}.md", std::process::id()));
        std::fs::write(
            &path,
            "# B\n\n## Gas\ng\n\n## Engine\nold\n\n## Runner\nr\n",
        )
        .unwrap();
        super::write_section(&path, "## Engine", "## Engine\nnew\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# B\n\n## Gas\ng\n\n## Engine\nnew\n\n## Runner\nr\n"
        );
        super::write_section(&path, "## Disk", "## Disk\nd").unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .ends_with("## Runner\nr\n\n## Disk\nd\n"));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_benchmark_rewrites_its_sections_and_keeps_the_others() {
        let path = std::env::temp_dir().join(format!("bench-sections-{}.md", std::process::id()));
        std::fs::write(&path, "# B\nold head\n\n## Gas\ng\n\n## Engine\ne\n").unwrap();
        super::write_sections(&path, "# B\nnew head\n\n## Gas\nG\n\n## Size\ns\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# B\nnew head\n\n## Gas\nG\n\n## Engine\ne\n\n## Size\ns\n"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
