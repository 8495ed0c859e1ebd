package io.nextword.sample.keyboard

import android.inputmethodservice.InputMethodService
import android.util.Log
import android.view.View
import android.view.inputmethod.EditorInfo
import android.widget.Button
import android.widget.LinearLayout
import android.widget.Toast
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
 * (or adds the next word) followed by a space; long-pressing one blocks and forgets it.
 *
 * What the user types in a field is learned when they leave it, unless the field's
 * [InputPolicy] forbids learning (the predictor is also put in incognito there, so nothing
 * reaches its store even by mistake). The user's model lives in the app's files dir.
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

    /** What this keyboard typed in the current field (what is learned when it is left). */
    private val typedInField = StringBuilder()

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
                model.setIncognito(!policy.learning)
                suggestions = LatestKeystrokeWins(scope, model, max = 3) { text, words ->
                    strip?.show(words.map { it.text })
                    shownFor = text
                }
                refresh()
            }.onFailure { Log.e(TAG, "cannot open the model; suggestions are off", it) }
        }
    }

    /** Opens the model with the user's model in the app's files dir; blocking, off the main thread. */
    protected open fun openPredictor(): NextWord =
        NextWord.openAsset(
            this,
            "nextword/en",
            NextWord.defaultConfig().apply { userDir = java.io.File(filesDir, "nextword-user").path },
        )

    override fun onCreateInputView(): View {
        val keyboard = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL }
        strip = SuggestionStrip(this, onPick = ::pick, onLongPress = ::forget).also { keyboard.addView(it) }
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
        typedInField.clear()
        nextWord?.let { model -> scope.launch { model.setIncognito(!policy.learning) } }
        requestedFor = null
        refresh()
    }

    override fun onFinishInput() {
        learnTypedText()
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
        typedInField.append(text)
        refresh()
    }

    fun deleteBackward() {
        currentInputConnection?.deleteSurroundingText(1, 0) ?: return
        if (typedInField.isNotEmpty()) typedInField.setLength(typedInField.length - 1)
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
        if (typedInField.endsWith(partial)) typedInField.setLength(typedInField.length - partial.length)
        typedInField.append("$word ")
        refresh()
    }

    /** A suggestion was long-pressed: never suggest it again, and forget it if it was learned. */
    fun forget(word: String) {
        val model = nextWord ?: return
        scope.launch {
            model.blockWord(word)
            model.removeWord(word)
            Toast.makeText(this@NextWordKeyboardService, "“$word” will not be suggested again", Toast.LENGTH_SHORT).show()
            requestedFor = null
            refresh()
        }
    }

    /** Learns what was typed in the field being left, where its policy allows. */
    private fun learnTypedText() {
        val model = nextWord
        val text = typedInField.toString()
        typedInField.clear()
        if (model == null || !policy.learning || text.isBlank()) return
        scope.launch { runCatching { model.learn(text) }.onFailure { Log.w(TAG, "learning failed", it) } }
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
        learnTypedText()
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
