package io.nextword.sample.keyboard

import android.os.Looper
import android.text.InputType
import android.view.View
import android.view.inputmethod.BaseInputConnection
import android.view.inputmethod.EditorInfo
import android.view.inputmethod.InputConnection
import io.nextword.NextWord
import java.io.File
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.Test
import org.junit.runner.RunWith
import org.robolectric.Robolectric
import org.robolectric.RobolectricTestRunner
import org.robolectric.RuntimeEnvironment
import org.robolectric.Shadows.shadowOf
import org.robolectric.android.controller.ServiceController
import org.robolectric.annotation.Config

/** The keyboard as a user drives it: keys typed, strip read, suggestion tapped. */
@RunWith(RobolectricTestRunner::class)
@Config(sdk = [34])
class NextWordKeyboardServiceTest {
    /** The text field being edited, recording what the keyboard commits. */
    class Field(view: View) : BaseInputConnection(view, true) {
        val commits = mutableListOf<String>()
        override fun commitText(text: CharSequence, newCursorPosition: Int): Boolean {
            commits += text.toString()
            return super.commitText(text, newCursorPosition)
        }
        val text: String get() = editable.toString()
    }

    /** The real service with the field attached and the model read from the repository. */
    class TestKeyboard : NextWordKeyboardService() {
        lateinit var field: Field
        override fun getCurrentInputConnection(): InputConnection = field
        override fun openPredictor(): NextWord =
            NextWord.open(File(System.getProperty("nextword.bundle.dir", "../../models/en")))
    }

    private lateinit var controller: ServiceController<TestKeyboard>
    private lateinit var keyboard: TestKeyboard
    private lateinit var strip: SuggestionStrip

    @Before
    fun startKeyboard() {
        controller = Robolectric.buildService(TestKeyboard::class.java)
        keyboard = controller.get()
        keyboard.field = Field(View(RuntimeEnvironment.getApplication()))
        controller.create()
        strip = findStrip(keyboard.onCreateInputView())
        waitUntil("the model opens") { keyboard.isModelOpen }
    }

    @After
    fun stopKeyboard() {
        controller.destroy()
    }

    private fun findStrip(view: View): SuggestionStrip {
        if (view is SuggestionStrip) return view
        if (view is android.view.ViewGroup) {
            for (i in 0 until view.childCount) {
                runCatching { return findStrip(view.getChildAt(i)) }
            }
        }
        throw AssertionError("no suggestion strip in the input view")
    }

    private fun textField(type: Int = InputType.TYPE_CLASS_TEXT or InputType.TYPE_TEXT_FLAG_AUTO_CORRECT) =
        EditorInfo().apply { inputType = type }

    private fun typeKeys(keys: String) = keys.forEach { keyboard.type(it.toString()) }

    /** Runs the main looper (where results arrive) until [done], for at most two minutes. */
    private fun waitUntil(what: String, done: () -> Boolean) {
        val deadline = System.nanoTime() + 120_000_000_000L
        while (true) {
            shadowOf(Looper.getMainLooper()).idle()
            if (done()) return
            if (System.nanoTime() > deadline) throw AssertionError("timed out waiting until $what")
            Thread.sleep(10)
        }
    }

    private fun waitForSuggestionsOf(text: String) =
        waitUntil("suggestions for '$text' are shown") { keyboard.shownFor == text }

    /** In a new text field, types [text] and returns the word its suggestions put in [slot]. */
    private fun typeAndReadSlot(text: String, slot: Int): String {
        keyboard.onStartInput(textField(), false)
        typeKeys(text)
        waitForSuggestionsOf(text)
        val word = strip.shown[slot]
        assertTrue("${strip.shown}", word.isNotEmpty())
        return word
    }

    @Test
    fun typingAPartialWordShowsCompletionsAndTappingReplacesIt() {
        keyboard.onStartInput(textField(), false)
        typeKeys("see you tom")
        assertEquals("see you tom", keyboard.field.text)
        waitForSuggestionsOf("see you tom")

        val words = strip.shown.filter { it.isNotEmpty() }
        assertTrue("${strip.shown}", words.isNotEmpty())
        assertTrue("${strip.shown}", words.all { it.startsWith("tom") })
        val best = strip.shown[1]
        assertTrue("the best suggestion sits in the middle: ${strip.shown}", best.isNotEmpty())

        keyboard.field.commits.clear()
        strip.tap(1)
        assertEquals(listOf("$best "), keyboard.field.commits)
        assertEquals("see you $best ", keyboard.field.text)

        waitForSuggestionsOf("see you $best ")
        assertTrue("next words after a pick: ${strip.shown}", strip.shown.any { it.isNotEmpty() })
    }

    @Test
    fun tappingAfterASpaceAddsTheNextWord() {
        val left = typeAndReadSlot("i will see you ", 0)
        strip.tap(0)
        assertEquals("i will see you $left ", keyboard.field.text)
    }

    @Test
    fun longPressingASuggestionBlocksIt() {
        val best = typeAndReadSlot("i will see you ", 1)
        strip.longPress(1)
        waitUntil("'$best' is gone from the strip") {
            keyboard.shownFor == "i will see you " && best !in strip.shown
        }
        assertEquals("long press changes no text", "i will see you ", keyboard.field.text)
    }

    @Test
    fun backspaceUpdatesTheSuggestions() {
        keyboard.onStartInput(textField(), false)
        typeKeys("see you tomx")
        keyboard.deleteBackward()
        assertEquals("see you tom", keyboard.field.text)
        waitForSuggestionsOf("see you tom")
        assertTrue("${strip.shown}", strip.shown.filter { it.isNotEmpty() }.all { it.startsWith("tom") })
    }

    @Test
    fun passwordFieldsGetNoSuggestionsAndNeverReachTheModel() {
        val passwords = listOf(
            InputType.TYPE_CLASS_TEXT or InputType.TYPE_TEXT_VARIATION_PASSWORD,
            InputType.TYPE_CLASS_TEXT or InputType.TYPE_TEXT_VARIATION_VISIBLE_PASSWORD,
            InputType.TYPE_CLASS_TEXT or InputType.TYPE_TEXT_VARIATION_WEB_PASSWORD,
            InputType.TYPE_CLASS_NUMBER or InputType.TYPE_NUMBER_VARIATION_PASSWORD,
        )
        for (type in passwords) {
            keyboard.onStartInput(textField(type), false)
            typeKeys("hunter ")
            shadowOf(Looper.getMainLooper()).idle()
            assertNull("type $type", keyboard.requestedFor)
            assertEquals(listOf("", "", ""), strip.shown)
            keyboard.onFinishInput()
        }
    }

    @Test
    fun noSuggestionsFlagIsHonouredAndANormalFieldAfterwardsGetsThemAgain() {
        keyboard.onStartInput(textField(InputType.TYPE_CLASS_TEXT or InputType.TYPE_TEXT_FLAG_NO_SUGGESTIONS), false)
        typeKeys("see you tom")
        shadowOf(Looper.getMainLooper()).idle()
        assertNull(keyboard.requestedFor)
        assertEquals(listOf("", "", ""), strip.shown)
        keyboard.onFinishInput()

        keyboard.onStartInput(textField(), false)
        keyboard.type(" ")
        waitForSuggestionsOf("see you tom ")
        assertTrue("${strip.shown}", strip.shown.any { it.isNotEmpty() })
    }
}
