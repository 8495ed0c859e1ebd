package io.nextword

import io.nextword.ffi.Suggestion
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Job
import kotlinx.coroutines.delay
import kotlinx.coroutines.ensureActive
import kotlinx.coroutines.launch

/**
 * Feeds keystrokes to a suggestion source so that a fast typist never waits for stale work:
 * each [onTextChanged] cancels the request of the previous keystroke, so at most one request
 * runs and only the newest text's suggestions are ever delivered.
 *
 * A request already inside the native call finishes there (it cannot be interrupted) but its
 * result is dropped; requests that had not started yet never run. With [debounceMillis] > 0 a
 * request waits that long first, so a burst of keystrokes costs one call.
 *
 * [onSuggestions] runs in [scope] (on Android: a main-thread scope, so it may touch views).
 * Not thread-safe: call [onTextChanged] and [cancel] from the scope's thread.
 */
class LatestKeystrokeWins(
    private val scope: CoroutineScope,
    private val debounceMillis: Long = 0,
    private val suggest: suspend (textBeforeCursor: String) -> List<Suggestion>,
    private val onSuggestions: (textBeforeCursor: String, List<Suggestion>) -> Unit,
) {
    /** Suggestions of [max] words from [nextWord]. */
    constructor(
        scope: CoroutineScope,
        nextWord: NextWord,
        max: Int = 3,
        debounceMillis: Long = 0,
        onSuggestions: (textBeforeCursor: String, List<Suggestion>) -> Unit,
    ) : this(scope, debounceMillis, { text -> nextWord.suggest(text, max) }, onSuggestions)

    private var pending: Job? = null

    fun onTextChanged(textBeforeCursor: String) {
        pending?.cancel()
        pending = scope.launch {
            if (debounceMillis > 0) delay(debounceMillis)
            val suggestions = suggest(textBeforeCursor)
            // A newer keystroke may have arrived while the native call ran.
            coroutineContext.ensureActive()
            onSuggestions(textBeforeCursor, suggestions)
        }
    }

    /** Drops any pending request, e.g. when the input field loses focus. */
    fun cancel() {
        pending?.cancel()
        pending = null
    }
}
