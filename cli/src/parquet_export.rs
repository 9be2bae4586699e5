//! `windows.parquet`: the labelled windows of a dataset (what
//! `windows.csv` holds) as one Parquet file that Spark, Dask, pandas or
//! XGBoost read as is.
//!
//! Columns: `case`, `node` (strings), `end_ms` (int64, ms since the epoch),
//! `labels` (the fault types joined by `;`, empty for a normal window),
//! `edge` (bool: a fault starts or ends inside, not for training), then one
//! `label_<type>` (int32, 0 or 1) per fault type of the dataset — the
//! target of that type's binary classifier — then every feature as a
//! nullable float (null where the CSV has an empty field: the series had no
//! data; XGBoost takes it as missing). One row group, snappy.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, FloatType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

/// The fixed leading columns of `windows.csv`.
const LEAD: [&str; 5] = ["case", "node", "end_ms", "labels", "edge"];

/// What was written: rows and columns.
#[derive(Debug, PartialEq)]
pub(crate) struct Written {
    pub(crate) rows: usize,
    pub(crate) columns: usize,
}

fn column(name: &str, physical: Physical, rep: Repetition) -> Result<Arc<Type>, String> {
    let mut b = Type::primitive_type_builder(name, physical).with_repetition(rep);
    if physical == Physical::BYTE_ARRAY {
        b = b.with_logical_type(Some(LogicalType::String));
    }
    b.build().map(Arc::new).map_err(|e| format!("column {name}: {e}"))
}

/// Converts the text of `windows.csv` into `path`.
pub(crate) fn windows_csv_to_parquet(csv_text: &str, path: &Path) -> Result<Written, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("windows.csv: {e}"))?
        .iter()
        .map(str::to_owned)
        .collect();
    if header.len() < LEAD.len() || header.iter().zip(LEAD).any(|(a, b)| a != b) {
        return Err(format!("windows.csv: unexpected header {:?}", header.join(",")));
    }
    let features = &header[LEAD.len()..];
    let (mut case, mut node, mut end, mut labels, mut edge) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Per feature: present values and definition levels (1 present, 0 null).
    let mut values: Vec<(Vec<f32>, Vec<i16>)> = vec![(Vec::new(), Vec::new()); features.len()];
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| format!("windows.csv: {e}"))?;
        let line = i + 2;
        case.push(ByteArray::from(&rec[0]));
        node.push(ByteArray::from(&rec[1]));
        end.push(rec[2].parse::<i64>().map_err(|e| format!("windows.csv:{line}: end_ms: {e}"))?);
        labels.push(rec[3].to_owned());
        edge.push(&rec[4] == "1");
        for (k, (vals, defs)) in values.iter_mut().enumerate() {
            let field = &rec[LEAD.len() + k];
            if field.is_empty() {
                defs.push(0);
            } else {
                let v = field
                    .parse::<f32>()
                    .map_err(|e| format!("windows.csv:{line}: {}: {e}", features[k]))?;
                vals.push(v);
                defs.push(1);
            }
        }
    }
    let types: BTreeSet<&str> =
        labels.iter().flat_map(|l| l.split(';')).filter(|t| !t.is_empty()).collect();

    let mut fields = vec![
        column("case", Physical::BYTE_ARRAY, Repetition::REQUIRED)?,
        column("node", Physical::BYTE_ARRAY, Repetition::REQUIRED)?,
        column("end_ms", Physical::INT64, Repetition::REQUIRED)?,
        column("labels", Physical::BYTE_ARRAY, Repetition::REQUIRED)?,
        column("edge", Physical::BOOLEAN, Repetition::REQUIRED)?,
    ];
    for t in &types {
        fields.push(column(&format!("label_{t}"), Physical::INT32, Repetition::REQUIRED)?);
    }
    for f in features {
        fields.push(column(f, Physical::FLOAT, Repetition::OPTIONAL)?);
    }
    let columns = fields.len();
    let schema = Arc::new(
        Type::group_type_builder("windows")
            .with_fields(fields)
            .build()
            .map_err(|e| e.to_string())?,
    );
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let err = |e: parquet::errors::ParquetError| format!("{}: {e}", path.display());
    let mut writer = SerializedFileWriter::new(file, schema, props).map_err(err)?;
    let mut group = writer.next_row_group().map_err(err)?;
    let label_bytes: Vec<ByteArray> = labels.iter().map(|l| ByteArray::from(l.as_str())).collect();
    let mut index = 0;
    while let Some(mut col) = group.next_column().map_err(err)? {
        match index {
            0 => col.typed::<ByteArrayType>().write_batch(&case, None, None),
            1 => col.typed::<ByteArrayType>().write_batch(&node, None, None),
            2 => col.typed::<Int64Type>().write_batch(&end, None, None),
            3 => col.typed::<ByteArrayType>().write_batch(&label_bytes, None, None),
            4 => col.typed::<BoolType>().write_batch(&edge, None, None),
            i if i < LEAD.len() + types.len() => {
                let t = types.iter().nth(i - LEAD.len()).copied().unwrap_or_default();
                let v: Vec<i32> =
                    labels.iter().map(|l| i32::from(l.split(';').any(|x| x == t))).collect();
                col.typed::<Int32Type>().write_batch(&v, None, None)
            }
            i => {
                let (vals, defs) = &values[i - LEAD.len() - types.len()];
                col.typed::<FloatType>().write_batch(vals, Some(defs), None)
            }
        }
        .map_err(err)?;
        col.close().map_err(err)?;
        index += 1;
    }
    group.close().map_err(err)?;
    writer.close().map_err(err)?;
    Ok(Written { rows: case.len(), columns })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn windows_become_typed_columns_with_a_target_per_type() {
        let csv = "case,node,end_ms,labels,edge,cpu.user:mean,\"disk,odd\":max\n\
                   c1,n1,1000,cpu_stress,0,0.5,\n\
                   c1,n2,1000,,1,-1.25,3\n\
                   c2,n1,2000,cpu_stress;disk_stress,0,,7\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.parquet");
        let w = windows_csv_to_parquet(csv, &path).unwrap();
        assert_eq!(w, Written { rows: 3, columns: 9 });
        let r = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let names: Vec<String> = r
            .metadata()
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "case",
                "node",
                "end_ms",
                "labels",
                "edge",
                "label_cpu_stress",
                "label_disk_stress",
                "cpu.user:mean",
                "disk,odd:max"
            ]
        );
        let rows: Vec<String> =
            r.get_row_iter(None).unwrap().map(|row| row.unwrap().to_string()).collect();
        assert_eq!(rows.len(), 3);
        assert!(
            rows[0].contains("label_cpu_stress: 1") && rows[0].contains("label_disk_stress: 0"),
            "{}",
            rows[0]
        );
        assert!(
            rows[1].contains("edge: true") && rows[1].contains("cpu.user:mean: -1.25"),
            "{}",
            rows[1]
        );
        assert!(
            rows[2].contains("cpu.user:mean: null") && rows[2].contains("label_disk_stress: 1"),
            "{}",
            rows[2]
        );
    }

    #[test]
    fn a_foreign_file_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let e = windows_csv_to_parquet("a,b\n1,2\n", &dir.path().join("x")).unwrap_err();
        assert!(e.contains("unexpected header"), "{e}");
        let e = windows_csv_to_parquet(
            "case,node,end_ms,labels,edge,f\nc,n,x,,0,1\n",
            &dir.path().join("x"),
        )
        .unwrap_err();
        assert!(e.contains("windows.csv:2: end_ms"), "{e}");
    }
}
