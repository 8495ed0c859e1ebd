// A minimal nextword keyboard extension: a 3-slot suggestion bar over a small QWERTY layout.
// Suggestions come from the text before the cursor; tapping one replaces the word being typed,
// long-pressing one blocks it and forgets it if it was learned.
import NextWord
import UIKit

final class KeyboardViewController: UIInputViewController {
    private let suggestionBar = UIStackView()
    private var suggestionButtons: [UIButton] = []
    private var predictor: Predictor?
    /// The latest keystroke's request; an older answer arriving late is dropped.
    private var pendingRequest: Task<Void, Never>?

    private static let rows = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]

    override func viewDidLoad() {
        super.viewDidLoad()
        buildSuggestionBar()
        buildKeys()
    }

    override func viewWillAppear(_ animated: Bool) {
        super.viewWillAppear(animated)
        Task { await openPredictor() }
    }

    override func viewWillDisappear(_ animated: Bool) {
        super.viewWillDisappear(animated)
        // The extension's memory is capped: give the model back while the keyboard is hidden.
        pendingRequest?.cancel()
        predictor?.close()
        predictor = nil
    }

    override func textDidChange(_ textInput: UITextInput?) {
        super.textDidChange(textInput)
        Task { await applyIncognito() }
        refreshSuggestions()
    }

    // MARK: model

    private func openPredictor() async {
        guard predictor == nil,
              let bundleURL = Bundle.main.url(forResource: "en", withExtension: nil, subdirectory: "models")
        else { return }
        do {
            var config = PredictorConfig()
            // In memory only: without open access the extension has no shared container.
            config.userDirectory = nil
            config.incognito = isSecureField
            predictor = try await Predictor.open(bundleURL: bundleURL, config: config)
            refreshSuggestions()
        } catch {
            NSLog("nextword: cannot open the bundle: %@", String(describing: error))
        }
    }

    /// Passwords and secure fields: nothing is learned from them.
    private var isSecureField: Bool {
        let proxy = textDocumentProxy
        if proxy.isSecureTextEntry == true { return true }
        // An optional protocol requirement of IUO type: `?? nil` flattens it to one optional.
        guard let contentType: UITextContentType = proxy.textContentType ?? nil else { return false }
        return [UITextContentType.password, .newPassword, .oneTimeCode].contains(contentType)
    }

    private func applyIncognito() async {
        try? await predictor?.setIncognito(isSecureField)
    }

    private func refreshSuggestions() {
        guard let predictor else { return showSuggestions([]) }
        let context = textDocumentProxy.documentContextBeforeInput ?? ""
        pendingRequest?.cancel()
        pendingRequest = Task { @MainActor in
            let suggestions = (try? await predictor.suggest(context, max: 3)) ?? []
            guard !Task.isCancelled else { return }
            showSuggestions(suggestions.map(\.text))
        }
    }

    // MARK: editing

    /// The letters typed since the last space or punctuation: what a completion replaces.
    private var partialWord: String {
        let context = textDocumentProxy.documentContextBeforeInput ?? ""
        return String(context.reversed().prefix { $0.isLetter || $0 == "'" }.reversed())
    }

    @objc private func suggestionTapped(_ sender: UIButton) {
        guard let word = sender.title(for: .normal), !word.isEmpty else { return }
        for _ in partialWord { textDocumentProxy.deleteBackward() }
        textDocumentProxy.insertText(word + " ")
        if !isSecureField {
            Task { try? await predictor?.learn(word) }
        }
        refreshSuggestions()
    }

    @objc private func suggestionLongPressed(_ gesture: UILongPressGestureRecognizer) {
        guard gesture.state == .began,
              let button = gesture.view as? UIButton,
              let word = button.title(for: .normal), !word.isEmpty,
              let predictor
        else { return }
        Task { @MainActor in
            _ = try? await predictor.blockWord(word)
            _ = try? await predictor.removeWord(word)
            refreshSuggestions()
        }
    }

    @objc private func keyTapped(_ sender: UIButton) {
        guard let key = sender.title(for: .normal) else { return }
        switch key {
        case "⌫": textDocumentProxy.deleteBackward()
        case "space": textDocumentProxy.insertText(" ")
        case "return": textDocumentProxy.insertText("\n")
        case "🌐": advanceToNextInputMode()
        default: textDocumentProxy.insertText(key)
        }
        refreshSuggestions()
    }

    // MARK: layout

    private func showSuggestions(_ words: [String]) {
        for (index, button) in suggestionButtons.enumerated() {
            let word = index < words.count ? words[index] : ""
            button.setTitle(word, for: .normal)
            button.isEnabled = !word.isEmpty
        }
    }

    private func buildSuggestionBar() {
        suggestionBar.axis = .horizontal
        suggestionBar.distribution = .fillEqually
        for _ in 0..<3 {
            let button = UIButton(type: .system)
            button.titleLabel?.font = .systemFont(ofSize: 17)
            button.addTarget(self, action: #selector(suggestionTapped(_:)), for: .touchUpInside)
            button.addGestureRecognizer(
                UILongPressGestureRecognizer(target: self, action: #selector(suggestionLongPressed(_:))))
            suggestionButtons.append(button)
            suggestionBar.addArrangedSubview(button)
        }
    }

    private func buildKeys() {
        let stack = UIStackView()
        stack.axis = .vertical
        stack.spacing = 6
        stack.translatesAutoresizingMaskIntoConstraints = false
        stack.addArrangedSubview(suggestionBar)
        for row in Self.rows {
            stack.addArrangedSubview(keyRow(row.map(String.init)))
        }
        var bottom = ["space", "⌫", "return"]
        if needsInputModeSwitchKey { bottom.insert("🌐", at: 0) }
        stack.addArrangedSubview(keyRow(bottom))
        view.addSubview(stack)
        NSLayoutConstraint.activate([
            stack.leadingAnchor.constraint(equalTo: view.leadingAnchor, constant: 4),
            stack.trailingAnchor.constraint(equalTo: view.trailingAnchor, constant: -4),
            stack.topAnchor.constraint(equalTo: view.topAnchor, constant: 4),
            stack.bottomAnchor.constraint(equalTo: view.bottomAnchor, constant: -4),
            suggestionBar.heightAnchor.constraint(equalToConstant: 36),
        ])
    }

    private func keyRow(_ keys: [String]) -> UIStackView {
        let row = UIStackView()
        row.axis = .horizontal
        row.distribution = .fillEqually
        row.spacing = 4
        for key in keys {
            let button = UIButton(type: .system)
            button.setTitle(key, for: .normal)
            button.titleLabel?.font = .systemFont(ofSize: 20)
            button.backgroundColor = .secondarySystemBackground
            button.layer.cornerRadius = 5
            button.heightAnchor.constraint(equalToConstant: 40).isActive = true
            button.addTarget(self, action: #selector(keyTapped(_:)), for: .touchUpInside)
            row.addArrangedSubview(button)
        }
        return row
    }
}
