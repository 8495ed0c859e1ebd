// The Swift face of nextword: a predictor that answers off the calling thread, typed errors,
// and value types that do not leak the generated FFI names into an app.
import Foundation
import NextWordFFI

/// What a suggestion is: the next word, the rest of the word being typed, a typo fix, the
/// typed text itself shown next to corrections, or a two-word phrase.
public enum SuggestionKind: Sendable, Equatable {
    case nextWord, completion, correction, verbatim, phrase

    init(_ kind: NextWordFFI.SuggestionKind) {
        switch kind {
        case .nextWord: self = .nextWord
        case .completion: self = .completion
        case .correction: self = .correction
        case .verbatim: self = .verbatim
        case .phrase: self = .phrase
        }
    }
}

public struct Suggestion: Sendable, Equatable {
    public let text: String
    /// Probability of the word given the text (not normalised over the suggestions).
    public let score: Float
    public let kind: SuggestionKind
}

/// Settings of the word search and of learning; `PredictorConfig()` gives the core's defaults.
public struct PredictorConfig: Sendable, Equatable {
    public var beamWidth: UInt32
    public var maxWordTokens: UInt32
    /// Where learned words are kept: the app group's container in a keyboard extension;
    /// `nil` keeps them in memory only.
    public var userDirectory: URL?
    /// Learn nothing and write nothing (secure fields, the user's choice).
    public var incognito: Bool
    public var blockOffensive: Bool
    public var typoCorrection: Bool
    /// Also offer a two-word phrase when the model is confident of both words.
    public var phrases: Bool

    public init() {
        let defaults = NextWordFFI.defaultConfig()
        beamWidth = defaults.beamWidth
        maxWordTokens = defaults.maxWordTokens
        userDirectory = defaults.userDir.map { URL(fileURLWithPath: $0, isDirectory: true) }
        incognito = defaults.incognito
        blockOffensive = defaults.blockOffensive
        typoCorrection = defaults.typoCorrection
        phrases = defaults.phrases
    }

    var ffi: NextWordFFI.PredictorConfig {
        NextWordFFI.PredictorConfig(
            beamWidth: beamWidth,
            maxWordTokens: maxWordTokens,
            userDir: userDirectory?.path,
            incognito: incognito,
            blockOffensive: blockOffensive,
            typoCorrection: typoCorrection,
            phrases: phrases
        )
    }
}

/// Every failure of the SDK, each with the core's explanation.
public enum NextWordError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No bundle at the URL given.
    case bundleNotFound(String)
    /// The bundle is not a valid nextword bundle (manifest, format, vocabulary, model, tokenizer).
    case bundleInvalid(String)
    /// A file of the bundle does not match its hash or signature.
    case bundleTampered(String)
    case invalidInput(String)
    case inference(String)
    case io(String)
    /// The user's word store is held by another predictor or process, or cannot be written.
    case userStore(String)
    /// The predictor was closed with `close()`.
    case closed(String)

    init(_ error: NextWordFFI.NextwordError) {
        switch error {
        case let .BundleNotFound(reason): self = .bundleNotFound(reason)
        case let .BundleInvalid(reason): self = .bundleInvalid(reason)
        case let .BundleTampered(reason): self = .bundleTampered(reason)
        case let .InvalidInput(reason): self = .invalidInput(reason)
        case let .Inference(reason): self = .inference(reason)
        case let .Io(reason): self = .io(reason)
        case let .UserStore(reason): self = .userStore(reason)
        case let .Closed(reason): self = .closed(reason)
        }
    }

    public var description: String {
        switch self {
        case let .bundleNotFound(reason): return "nextword bundle not found: \(reason)"
        case let .bundleInvalid(reason): return "invalid nextword bundle: \(reason)"
        case let .bundleTampered(reason): return "tampered nextword bundle: \(reason)"
        case let .invalidInput(reason): return "invalid input: \(reason)"
        case let .inference(reason): return "inference failed: \(reason)"
        case let .io(reason): return "I/O error: \(reason)"
        case let .userStore(reason): return "user word store unavailable: \(reason)"
        case let .closed(reason): return "predictor closed: \(reason)"
        }
    }
}

/// Runs `body` and turns the generated error type into `NextWordError`.
private func mapped<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as NextWordFFI.NextwordError {
        throw NextWordError(error)
    }
}

/// An open model bundle. Inference runs on a private serial queue, never on the caller's
/// (main) thread, one call at a time as the core requires; a keyboard keeps one predictor.
public final class Predictor: @unchecked Sendable {
    // @unchecked: `ffi` is Send + Sync on the Rust side and only used from `queue`.
    private let ffi: NextWordFFI.Predictor
    private let queue = DispatchQueue(label: "io.nextword.predictor", qos: .userInitiated)

    /// Opens and verifies the bundle directory at `bundleURL` (e.g. `models/en` copied into
    /// the extension's resources). Opening maps the weights; call it off the main thread.
    public init(bundleURL: URL, config: PredictorConfig = PredictorConfig()) throws {
        ffi = try mapped { try NextWordFFI.Predictor.open(bundlePath: bundleURL.path, config: config.ffi) }
    }

    /// Opens the predictor off the calling thread.
    public static func open(bundleURL: URL, config: PredictorConfig = PredictorConfig()) async throws -> Predictor {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global(qos: .userInitiated).async {
                continuation.resume(with: Result { try Predictor(bundleURL: bundleURL, config: config) })
            }
        }
    }

    /// Up to `max` ranked suggestions for the text before the cursor.
    public func suggest(_ textBeforeCursor: String, max: Int = 3) async throws -> [Suggestion] {
        let limit = UInt32(clamping: Swift.max(0, max))
        return try await run { ffi in
            try ffi.suggest(textBeforeCursor: textBeforeCursor, max: limit).map {
                Suggestion(text: $0.text, score: $0.score, kind: SuggestionKind($0.kind))
            }
        }
    }

    /// Learns text the user committed (call it when a word or sentence is committed, not per
    /// keystroke); false when incognito, where nothing is learned or written.
    @discardableResult
    public func learn(_ committedText: String) async throws -> Bool {
        try await run { try $0.learn(committedText: committedText) }
    }

    /// Incognito for this session (secure fields): nothing is learned or written while on.
    public func setIncognito(_ on: Bool) async throws {
        try await run { try $0.setIncognito(on: on) }
    }

    /// Never suggests `word` again, in any casing.
    @discardableResult
    public func blockWord(_ word: String) async throws -> Bool {
        try await run { try $0.blockWord(word: word) }
    }

    /// Forgets a learned or added word; whether it was known.
    @discardableResult
    public func removeWord(_ word: String) async throws -> Bool {
        try await run { try $0.removeWord(word: word) }
    }

    /// Releases the model (do it in `viewWillDisappear` of a keyboard: the extension's memory
    /// is capped). Every later call throws `NextWordError.closed`.
    public func close() {
        ffi.release()
    }

    private func run<T>(_ body: @escaping (NextWordFFI.Predictor) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { [ffi] in
                continuation.resume(with: Result { try mapped { try body(ffi) } })
            }
        }
    }
}
