fn main() {
    let schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<poblysh_connectors::descriptor::ConnectorDescriptor>();
    println!("{}", serde_json::to_string_pretty(&schema).unwrap());
}
