/// Attribute keys the pprof <-> OTLP conversion reads and writes.
///
/// The `pprof.*` keys carry what pprof has and OTLP does not. Where the semantic
/// conventions' `pprof` namespace names a field, that name is used; the two keys marked
/// "ours" have no convention yet.
enum PprofOTLPSchema {
    /// Scope: the pprof position of each profile's sample type, an int array in the order
    /// of the scope's profiles. Its presence marks the scope as one converted pprof.
    static let sampleTypeOrder = "pprof.scope.sample_type_order"
    /// Scope: pprof's `default_sample_type` (the type name); absent when pprof had none.
    static let defaultSampleType = "pprof.scope.default_sample_type"

    /// Profile: pprof's comments, an array of strings (absent when there are none).
    static let comment = "pprof.profile.comment"
    /// Profile: pprof's `doc_url`, `drop_frames` and `keep_frames` (absent when empty).
    static let docURL = "pprof.profile.doc_url"
    static let dropFrames = "pprof.profile.drop_frames"
    static let keepFrames = "pprof.profile.keep_frames"

    /// Mapping: pprof's `has_*` flags, bool `true` (absent when false).
    static let hasFunctions = "pprof.mapping.has_functions"
    static let hasFilenames = "pprof.mapping.has_filenames"
    static let hasLineNumbers = "pprof.mapping.has_line_numbers"
    static let hasInlineFrames = "pprof.mapping.has_inline_frames"

    /// Location: pprof's `is_folded`, bool `true` (absent when false).
    static let isFolded = "pprof.location.is_folded"
    /// Location (ours): bool `true` on a pprof location with no address, mapping, lines
    /// or flag. Without it that location would be OTLP's all-default entry 0, which means
    /// "unset" and which a stack may not use.
    static let emptyLocation = "pprof.location.empty"

    /// Sample (ours): only when the numeric labels of one key carry different units. A
    /// key-value list: label key -> array of units, one per element of that key's array
    /// attribute ("" for string elements). Otherwise the attribute's unit is the unit.
    static let labelUnits = "pprof.sample.label_units"

    /// Prefix of every key above; such attributes never become pprof labels.
    static let prefix = "pprof."

    /// Build id keys of the semantic conventions.
    static let buildIDGNU = "process.executable.build_id.gnu"
    static let buildIDGo = "process.executable.build_id.go"
    static let buildIDHTLHash = "process.executable.build_id.htlhash"

    /// `original_payload_format` of a converted pprof.
    static let originalPayloadFormat = "pprof"

    /// Scope name of converted profiles.
    static let scopeName = "nodeprof-convert"

    /// OTLP attributes that become differently named pprof labels (general requests only),
    /// named as ``PprofEncoder`` names them.
    static let processID = "process.pid"
    static let executableName = "process.executable.name"
    static let threadID = "thread.id"
    static let threadName = "thread.name"
    static let traceIDLabel = "trace_id"
    static let spanIDLabel = "span_id"
}
