//! Printing objects: kubectl's per-kind tables, YAML, JSON, `kind/name`, JSONPath
//! templates and custom columns.

pub mod jsonpath;
mod table;

use proto::codec::{to_json_pretty, to_yaml};
use proto::{DynamicObject, KindInfo};
use serde_json::{Value as Json, json};

pub use jsonpath::Template;
pub use table::{TableOptions, align, align_to, human_duration, table_rows};

#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
    JsonPath(Template),
    /// (header, expression) per column.
    CustomColumns(Vec<(String, Template)>),
}

impl Format {
    pub fn parse(output: Option<&str>) -> anyhow::Result<Format> {
        let output = output.unwrap_or("");
        if let Some(template) = output.strip_prefix("jsonpath=") {
            let template =
                Template::parse(template).map_err(|e| anyhow::anyhow!("error parsing jsonpath {template}: {e}"))?;
            return Ok(Format::JsonPath(template));
        }
        if let Some(spec) = output.strip_prefix("custom-columns=") {
            let mut columns = Vec::new();
            for column in spec.split(',').filter(|c| !c.is_empty()) {
                let Some((header, expression)) = column.split_once(':') else {
                    anyhow::bail!("unexpected custom-columns spec: \"{column}\", expected <header>:<json-path-expr>");
                };
                let template =
                    Template::parse(expression).map_err(|e| anyhow::anyhow!("custom column {header}: {e}"))?;
                columns.push((header.to_string(), template));
            }
            if columns.is_empty() {
                anyhow::bail!("custom-columns format specified but no custom columns given");
            }
            return Ok(Format::CustomColumns(columns));
        }
        Ok(match output {
            "" => Format::Table,
            "wide" => Format::Wide,
            "yaml" => Format::Yaml,
            "json" => Format::Json,
            "name" => Format::Name,
            other => anyhow::bail!(
                "unable to match a printer suitable for the output format \"{other}\", allowed formats are: custom-columns, json, jsonpath, name, wide, yaml"
            ),
        })
    }

    /// Whether this format prints objects whole (as a document) rather than in rows.
    pub fn is_document(&self) -> bool {
        matches!(self, Format::Yaml | Format::Json | Format::JsonPath(_))
    }
}

/// `deployment.apps/web`
pub fn name_of(info: &KindInfo, name: &str) -> String {
    format!("{}/{}", info.qualified_singular(), name)
}

/// Objects as one document (a List when more than one, or when `force_list`).
pub fn document_value(objects: &[DynamicObject], force_list: bool) -> Json {
    let mut items: Vec<Json> = objects.iter().map(DynamicObject::to_json).collect();
    if items.len() == 1 && !force_list {
        items.remove(0)
    } else {
        json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
    }
}

/// Objects as one document in YAML, JSON or through a JSONPath template.
pub fn document(objects: &[DynamicObject], format: &Format, force_list: bool) -> String {
    let value = document_value(objects, force_list);
    render_value(&value, format)
}

pub fn render_value(value: &Json, format: &Format) -> String {
    match format {
        Format::Json => format!("{}\n", to_json_pretty(value)),
        Format::JsonPath(template) => template.render(value),
        _ => to_yaml(value),
    }
}

/// Rows of custom columns; a missing value reads `<none>`, several are joined by commas.
pub fn custom_rows(columns: &[(String, Template)], objects: &[Json], headers: bool) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    if headers {
        rows.push(columns.iter().map(|(h, _)| h.clone()).collect());
    }
    for object in objects {
        rows.push(
            columns
                .iter()
                .map(|(_, template)| {
                    let values = template.values(object);
                    if values.is_empty() || values.iter().all(Json::is_null) {
                        "<none>".to_string()
                    } else {
                        values.iter().map(jsonpath::show).collect::<Vec<_>>().join(",")
                    }
                })
                .collect(),
        );
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_columns_parse_and_fill() {
        let Format::CustomColumns(columns) =
            Format::parse(Some("custom-columns=NAME:.metadata.name,PORTS:.spec.ports[*].port,X:.nope")).unwrap()
        else {
            panic!("not custom columns");
        };
        let object = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}, {"port": 443}]}});
        let rows = custom_rows(&columns, &[object], true);
        assert_eq!(align(&rows), "NAME   PORTS    X\nweb    80,443   <none>\n");
        assert!(Format::parse(Some("custom-columns=NAME")).is_err());
        assert!(Format::parse(Some("go-template={{.x}}")).is_err());
    }
}
