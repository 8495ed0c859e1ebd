package io.nextword.sample.keyboard

import android.inputmethodservice.InputMethodService
import android.util.Log
import android.view.View
import android.view.inputmethod.EditorInfo
import android.widget.Button
import android.widget.LinearLayout
import io.nextword.LatestKeystrokeWins
import io.nextword.NextWord
import io.nextword.openAsset
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.MainScope
import kotlinx.coroutines.cancel
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/**
 * A minimal keyboard with nextword suggestions: three letter rows, space and backspace, and a
 * strip of three suggestions above them. Tapping a suggestion replaces the word being typed
 * (or adds the next word) followed by a space.
 *
 * The model bundle ships in the APK's assets under `nextword/en` and is opened off the main
 * thread; until it is open, and in fields whose [InputPolicy] forbids it, the strip is empty.
 */
open class NextWordKeyboardService : InputMethodService() {
    private val scope = MainScope()
    private var nextWord: NextWord? = null
    private var suggestions: LatestKeystrokeWins? = null
    private var strip: SuggestionStrip? = null
    private var policy = InputPolicy.OFF

    /** Whether the model is open (suggestions can be shown). */
    val isModelOpen: Boolean get() = suggestions != null

    /** The text before the cursor last sent to the model, or null. */
    var requestedFor: String? = null
        private set

    /** The text before the cursor whose suggestions the strip shows, or null. */
    var shownFor: String? = null
        private set

    override fun onCreate() {
        super.onCreate()
        scope.launch {
            val opened = withContext(Dispatchers.IO) { runCatching { openPredictor() } }
            opened.onSuccess { model ->
                nextWord = model
                suggestions = LatestKeystrokeWins(scope, model, max = 3) { text, words ->
                    strip?.show(words.map { it.text })
                    shownFor = text
                }
                refresh()
            }.onFailure { Log.e(TAG, "cannot open the model; suggestions are off", it) }
        }
    }

    /** Opens the model; blocking, called off the main thread. */
    protected open fun openPredictor(): NextWord = NextWord.openAsset(this, "nextword/en")

    override fun onCreateInputView(): View {
        val keyboard = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL }
        strip = SuggestionStrip(this, ::pick).also { keyboard.addView(it) }
        for (row in LETTER_ROWS) {
            keyboard.addView(keyRow(row.map { letter -> letter.toString() to { type(letter.toString()) } }))
        }
        keyboard.addView(keyRow(listOf("space" to { type(" ") }, "⌫" to ::deleteBackward)))
        return keyboard
    }

    private fun keyRow(keys: List<Pair<String, () -> Unit>>): LinearLayout =
        LinearLayout(this).apply {
            orientation = LinearLayout.HORIZONTAL
            for ((label, action) in keys) {
                addView(
                    Button(context).apply {
                        text = label
                        isAllCaps = false
                        setOnClickListener { action() }
                    },
                    LinearLayout.LayoutParams(0, LinearLayout.LayoutParams.WRAP_CONTENT, 1f),
                )
            }
        }

    override fun onStartInput(attribute: EditorInfo?, restarting: Boolean) {
        super.onStartInput(attribute, restarting)
        policy = InputPolicy.of(attribute)
        requestedFor = null
        refresh()
    }

    override fun onFinishInput() {
        suggestions?.cancel()
        strip?.clear()
        shownFor = null
        super.onFinishInput()
    }

    /** The app changed the text or moved the cursor. */
    override fun onUpdateSelection(
        oldSelStart: Int, oldSelEnd: Int, newSelStart: Int, newSelEnd: Int,
        candidatesStart: Int, candidatesEnd: Int,
    ) {
        super.onUpdateSelection(oldSelStart, oldSelEnd, newSelStart, newSelEnd, candidatesStart, candidatesEnd)
        refresh()
    }

    /** A key: inserts [text] at the cursor. */
    fun type(text: String) {
        currentInputConnection?.commitText(text, 1) ?: return
        refresh()
    }

    fun deleteBackward() {
        currentInputConnection?.deleteSurroundingText(1, 0) ?: return
        refresh()
    }

    /** A suggestion was tapped: it replaces the word being typed, then a space follows. */
    fun pick(word: String) {
        val connection = currentInputConnection ?: return
        val before = connection.getTextBeforeCursor(MAX_WORD_CHARS, 0)?.toString().orEmpty()
        val partial = before.takeLastWhile(::isWordChar)
        connection.beginBatchEdit()
        if (partial.isNotEmpty()) connection.deleteSurroundingText(partial.length, 0)
        connection.commitText("$word ", 1)
        connection.endBatchEdit()
        refresh()
    }

    private fun refresh() {
        val source = suggestions
        if (!policy.suggestions || source == null) {
            suggestions?.cancel()
            strip?.clear()
            shownFor = null
            return
        }
        val before = currentInputConnection?.getTextBeforeCursor(CONTEXT_CHARS, 0)?.toString() ?: return
        if (before == requestedFor) return
        requestedFor = before
        source.onTextChanged(before)
    }

    override fun onDestroy() {
        scope.cancel()
        nextWord?.close()
        super.onDestroy()
    }

    private companion object {
        const val TAG = "NextWordKeyboard"
        /** Text before the cursor given to the model; the core keeps what it needs of it. */
        const val CONTEXT_CHARS = 400
        const val MAX_WORD_CHARS = 64
        val LETTER_ROWS = listOf("qwertyuiop", "asdfghjkl'", "zxcvbnm")

        fun isWordChar(c: Char) = c.isLetterOrDigit() || c == '\''
    }
}
