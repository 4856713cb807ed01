//! Reading the organisation from spreadsheets: CSV, or the first sheet of an .xlsx
//! workbook (through calamine). Errors name the file and line; the header is line 1.

use crate::org::{Numbered, PersonRow, RowError, UnitRow};
use std::collections::HashMap;
use std::path::Path;

/// A header-indexed table of trimmed cells, each row with its line number.
struct Table {
    file: String,
    columns: HashMap<String, usize>,
    rows: Vec<Line>,
}

/// A line of the file (1-based) and its cells.
type Line = (usize, Vec<String>);

impl Table {
    fn read(path: &Path) -> Result<Self, RowError> {
        let file = path.display().to_string();
        let fail = |line: usize, message: String| RowError {
            file: file.clone(),
            line,
            message,
        };
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut records: Vec<Line> = Vec::new();
        match ext.as_str() {
            "csv" => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_path(path)
                    .map_err(|e| fail(0, e.to_string()))?;
                for rec in reader.records() {
                    let rec =
                        rec.map_err(|e| fail(e.position().map_or(0, |p| p.line() as usize), format!("CSV: {e}")))?;
                    let line = rec.position().map_or(records.len() + 1, |p| p.line() as usize);
                    records.push((line, rec.iter().map(|c| c.trim().to_string()).collect()));
                }
            }
            "xlsx" | "xlsm" => records = unbroken(|| xlsx_rows(path)).map_err(|(row, message)| fail(row, message))?,
            // .xls and .ods readers build the sheet's whole stated range before a cell can
            // be looked at (an .ods row may repeat itself a million times in a few bytes).
            _ => {
                return Err(fail(
                    0,
                    format!("unsupported file type \".{ext}\": save it as .xlsx or .csv"),
                ));
            }
        }
        let mut records = records
            .into_iter()
            .filter(|(_, cells)| cells.iter().any(|c| !c.is_empty()));
        let (_, header) = records
            .next()
            .ok_or_else(|| fail(1, "the file is empty: expected a header row".into()))?;
        let columns = header
            .iter()
            .enumerate()
            .map(|(i, h)| (h.trim_start_matches('\u{feff}').to_ascii_lowercase(), i))
            .collect();
        Ok(Table {
            file,
            columns,
            rows: records.collect(),
        })
    }

    fn require(&self, names: &[&str]) -> Result<(), RowError> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !self.columns.contains_key(*n))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(RowError {
                file: self.file.clone(),
                line: 1,
                message: format!("missing column(s): {}", missing.join(", ")),
            })
        }
    }

    fn cell<'a>(&self, cells: &'a [String], name: &str) -> &'a str {
        self.columns
            .get(name)
            .and_then(|i| cells.get(*i))
            .map_or("", String::as_str)
    }

    fn optional(&self, cells: &[String], name: &str) -> Option<String> {
        Some(self.cell(cells, name).to_string()).filter(|s| !s.is_empty())
    }
}

pub fn read_units(path: &Path) -> Result<Vec<Numbered<UnitRow>>, RowError> {
    let t = Table::read(path)?;
    t.require(&["id", "parent", "kind", "name"])?;
    Ok(t.rows
        .iter()
        .map(|(line, cells)| Numbered {
            file: t.file.clone(),
            line: *line,
            row: UnitRow {
                id: t.cell(cells, "id").to_string(),
                parent: t.optional(cells, "parent"),
                kind: t.cell(cells, "kind").to_string(),
                name: t.cell(cells, "name").to_string(),
                name_en: t.optional(cells, "name_en"),
            },
        })
        .collect())
}

/// The columns a person row is made of; any other column is an attribute.
const PERSON_COLUMNS: [&str; 6] = ["id", "name", "unit", "roles", "phone", "locale"];

pub fn read_people(path: &Path) -> Result<Vec<Numbered<PersonRow>>, RowError> {
    let t = Table::read(path)?;
    t.require(&["id", "name", "unit", "roles"])?;
    Ok(t.rows
        .iter()
        .map(|(line, cells)| Numbered {
            file: t.file.clone(),
            line: *line,
            row: PersonRow {
                id: t.cell(cells, "id").to_string(),
                name: t.cell(cells, "name").to_string(),
                unit: t.cell(cells, "unit").to_string(),
                roles: parse_roles(t.cell(cells, "roles")),
                phone: t.optional(cells, "phone"),
                locale: t.optional(cells, "locale"),
                attributes: t
                    .columns
                    .keys()
                    .filter(|c| !PERSON_COLUMNS.contains(&c.as_str()))
                    .filter_map(|c| t.optional(cells, c).map(|v| (c.clone(), v)))
                    .collect(),
            },
        })
        .collect())
}

/// `grid_worker; dispatcher@guoyuan` → `[(grid_worker, None), (dispatcher, Some(guoyuan))]`.
pub fn parse_roles(text: &str) -> Vec<(String, Option<String>)> {
    text.split([';', '；', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('@') {
            Some((role, unit)) => (role.trim().to_string(), Some(unit.trim().to_string())),
            None => (s.to_string(), None),
        })
        .collect()
}

/// Columns an import reads at most: a register has a dozen.
const MAX_COLUMNS: u32 = 100;

/// Run the spreadsheet library on a file a stranger made: a panic inside it (a cell name
/// long enough to overflow its column arithmetic, found by fuzzing calamine 0.38) becomes
/// a refusal of the file, not a crash of the import or the server.
fn unbroken<T>(read: impl FnOnce() -> Result<T, (usize, String)>) -> Result<T, (usize, String)> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))
        .unwrap_or_else(|_| Err((0, "spreadsheet: the file is damaged and cannot be read".into())))
}

/// The first sheet's rows, read cell by cell: a sheet's stated size is not trusted, so one
/// cell at XFD1048576 in a 1.4 KB file is refused instead of allocating every cell up to it.
fn xlsx_rows(path: &Path) -> Result<Vec<Line>, (usize, String)> {
    use calamine::{Data, Reader, Xlsx, open_workbook};
    let fail = |e: calamine::XlsxError| (0, format!("spreadsheet: {e}"));
    let mut book: Xlsx<_> = open_workbook(path).map_err(fail)?;
    let first = book
        .sheet_names()
        .into_iter()
        .next()
        .ok_or((0, "the workbook has no sheet".to_string()))?;
    let mut cells = book.worksheet_cells_reader(&first).map_err(fail)?;
    let mut rows: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    while let Some(cell) = cells.next_cell().map_err(fail)? {
        let (row, col) = cell.get_position();
        if col >= MAX_COLUMNS {
            return Err((
                row as usize + 1,
                format!(
                    "a cell in column {} is beyond the {MAX_COLUMNS} columns an import reads",
                    col + 1
                ),
            ));
        }
        let text = Data::from(cell.get_value().clone()).to_string().trim().to_string();
        let cells = rows.entry(row).or_default();
        if cells.len() <= col as usize {
            cells.resize(col as usize + 1, String::new());
        }
        cells[col as usize] = text;
    }
    Ok(rows.into_iter().map(|(row, cells)| (row as usize + 1, cells)).collect())
}
