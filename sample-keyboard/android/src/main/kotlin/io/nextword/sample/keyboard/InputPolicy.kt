package io.nextword.sample.keyboard

import android.text.InputType
import android.view.inputmethod.EditorInfo

/**
 * What the keyboard may do in the field being edited, from its [EditorInfo]: no suggestions in
 * password fields, in fields that are not free text (numbers, phones, dates), or where the app
 * sets `TYPE_TEXT_FLAG_NO_SUGGESTIONS`. (The keyboard learns nothing yet; when it does, the
 * same place must turn learning off for passwords and `IME_FLAG_NO_PERSONALIZED_LEARNING`.)
 */
data class InputPolicy(val suggestions: Boolean) {
    companion object {
        val OFF = InputPolicy(suggestions = false)

        fun of(info: EditorInfo?): InputPolicy {
            if (info == null) return OFF
            val type = info.inputType
            if (type and InputType.TYPE_MASK_CLASS != InputType.TYPE_CLASS_TEXT) return OFF
            if (isPassword(type)) return OFF
            return InputPolicy(suggestions = type and InputType.TYPE_TEXT_FLAG_NO_SUGGESTIONS == 0)
        }

        private fun isPassword(type: Int): Boolean =
            when (type and InputType.TYPE_MASK_VARIATION) {
                InputType.TYPE_TEXT_VARIATION_PASSWORD,
                InputType.TYPE_TEXT_VARIATION_VISIBLE_PASSWORD,
                InputType.TYPE_TEXT_VARIATION_WEB_PASSWORD -> true
                else -> false
            }
    }
}
