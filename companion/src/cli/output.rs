//! Rendering answers for people (`--output table`) or programs (`--output json`, one JSON
//! object per command on one line).

use std::io::Write;

use clap::ValueEnum;
use serde::Serialize;

use crate::api::{CreatedToken, TokenList, TokenMetadata};

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned text for people
    Table,
    /// One JSON object on one line, for scripts
    Json,
}

fn json_line(out: &mut impl Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

fn function_label(metadata: &TokenMetadata) -> &str {
    metadata.function_id.as_deref().unwrap_or("- (namespace token: every function)")
}

fn metadata_lines(out: &mut impl Write, metadata: &TokenMetadata) -> std::io::Result<()> {
    writeln!(out, "id           {}", metadata.id)?;
    writeln!(out, "namespace    {}", metadata.namespace_id)?;
    writeln!(out, "function     {}", function_label(metadata))?;
    writeln!(out, "description  {}", metadata.description)?;
    writeln!(out, "status       {}", metadata.status.as_str())?;
    writeln!(out, "created_at   {}", metadata.created_at)?;
    writeln!(out, "expires_at   {}", metadata.expires_at.as_deref().unwrap_or("never"))?;
    if let Some(deleted_at) = &metadata.deleted_at {
        writeln!(out, "deleted_at   {deleted_at}")?;
    }
    Ok(())
}

/// A new token: its metadata and, this once, the token.
pub fn created(out: &mut impl Write, format: OutputFormat, created: &CreatedToken) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => json_line(out, created),
        OutputFormat::Table => {
            metadata_lines(out, &created.metadata)?;
            writeln!(out)?;
            writeln!(out, "token:")?;
            writeln!(out, "{}", created.token)?;
            writeln!(out)?;
            writeln!(out, "This token will not be shown again: store it now.")
        }
    }
}

/// One token's metadata.
pub fn metadata(out: &mut impl Write, format: OutputFormat, metadata: &TokenMetadata) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => json_line(out, metadata),
        OutputFormat::Table => metadata_lines(out, metadata),
    }
}

/// A token list, one row per token.
pub fn list(out: &mut impl Write, format: OutputFormat, list: &TokenList) -> std::io::Result<()> {
    if format == OutputFormat::Json {
        return json_line(out, list);
    }
    if list.tokens.is_empty() {
        return writeln!(out, "no tokens");
    }
    let header = ["ID", "FUNCTION", "STATUS", "CREATED_AT", "EXPIRES_AT", "DESCRIPTION"];
    let rows: Vec<[&str; 6]> = list
        .tokens
        .iter()
        .map(|token| {
            [
                token.id.as_str(),
                token.function_id.as_deref().unwrap_or("-"),
                token.status.as_str(),
                token.created_at.as_str(),
                token.expires_at.as_deref().unwrap_or("never"),
                token.description.as_str(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// A deleted token.
pub fn deleted(out: &mut impl Write, format: OutputFormat, id: &str) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => json_line(out, &serde_json::json!({ "id": id, "deleted": true })),
        OutputFormat::Table => writeln!(out, "deleted token {id}; its key has left the namespace JWKS"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TokenStatus;

    fn sample(function_id: Option<&str>) -> TokenMetadata {
        TokenMetadata {
            id: "0f8fad5b-d9cb-469f-a165-70867728950e".to_owned(),
            namespace_id: "shop".to_owned(),
            function_id: function_id.map(str::to_owned),
            description: "ci deploy".to_owned(),
            created_at: "2026-12-03T17:00:00Z".to_owned(),
            expires_at: None,
            status: TokenStatus::Active,
            deleted_at: None,
        }
    }

    fn render(write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
        let mut out = Vec::new();
        write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn created_table_and_json() {
        let token = CreatedToken { metadata: sample(Some("cart")), token: "a.b.c".to_owned() };
        let table = render(|out| created(out, OutputFormat::Table, &token));
        assert!(table.contains("function     cart\n"), "{table}");
        assert!(table.contains("\na.b.c\n"), "{table}");
        assert!(table.contains("will not be shown again"), "{table}");
        let json = render(|out| created(out, OutputFormat::Json, &token));
        assert_eq!(json.lines().count(), 1);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["token"], "a.b.c");
        assert_eq!(value["id"], "0f8fad5b-d9cb-469f-a165-70867728950e");
    }

    #[test]
    fn list_table_aligns_columns() {
        let tokens = TokenList { tokens: vec![sample(None), sample(Some("checkout"))] };
        let table = render(|out| list(out, OutputFormat::Table, &tokens));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("ID                                    FUNCTION  STATUS"), "{table}");
        let column = lines[0].find("STATUS").unwrap();
        assert_eq!(lines[1].find("active"), Some(column), "{table}");
        assert_eq!(lines[2].find("active"), Some(column), "{table}");
        assert!(lines[1].ends_with("never       ci deploy"), "{table}");
        let empty = render(|out| list(out, OutputFormat::Table, &TokenList { tokens: vec![] }));
        assert_eq!(empty, "no tokens\n");
    }
}
